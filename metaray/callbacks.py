"""Hooks on the driver's loop, as Ray Tune's ``Callback`` is on its trial loop: what a search leaves behind beyond its
run folder (MLflow runs, TensorBoard files, the HTML report, the best network's weights) is written by a callback.

A search calls its callbacks in the order given, on the driver's main thread; every hook is optional::

    on_search_start(setup)        the run folder is prepared, the plan made, Ray not yet connected: start what takes
                                  time (``setup``: a metaray.run.Setup: spec, folder, prepared, plan, meta-features)
    on_fits_start()               Ray is connected and no fit has run: wait here for what must be ready first
    on_trial_end(trial, ranking)  a configuration completed, was stopped or failed (metaray.results.Ranking reads it)
    on_results(result)            the results table and best.json are written (``result``: a SearchResult; the
                                  MLflow callback fills its ``mlflow_run_id``): start what takes time (MLflow logs
                                  the results and the best model while the report is drawn)
    on_search_end(result)         then: make the files, log them
    on_search_error(exc)          the search stops without a result (an error, Ctrl-C)
    close(say)                    always, last: wait for what is still being written, say what went wrong

A hook must not raise for its own failures (a report that cannot be made costs the report, not the search): it says
one line through ``say`` instead. The exceptions are MLflow's (metaray.tracking): a tracking store that cannot be
reached stops the search in ``on_fits_start``, before any fit, and one that fails at the end fails the search.
"""

from __future__ import annotations

import contextlib


class Callback:
    """A no-op for every hook; subclasses override what they need."""

    def on_search_start(self, setup) -> None:
        pass

    def on_fits_start(self) -> None:
        pass

    def on_trial_end(self, trial, ranking) -> None:
        pass

    def on_results(self, result) -> None:
        pass

    def on_search_end(self, result) -> None:
        pass

    def on_search_error(self, exc: BaseException) -> None:
        pass

    def close(self, say) -> None:
        pass


class CallbackList(Callback):
    """Calls each hook of every callback, in order. ``on_search_error`` and ``close`` reach every callback even when
    one of them raises (the first error is raised after): cleaning up must not stop half-way."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def on_search_start(self, setup) -> None:
        for c in self.callbacks:
            c.on_search_start(setup)

    def on_fits_start(self) -> None:
        for c in self.callbacks:
            c.on_fits_start()

    def on_trial_end(self, trial, ranking) -> None:
        for c in self.callbacks:
            c.on_trial_end(trial, ranking)

    def on_results(self, result) -> None:
        for c in self.callbacks:
            c.on_results(result)

    def on_search_end(self, result) -> None:
        for c in self.callbacks:
            c.on_search_end(result)

    def on_search_error(self, exc: BaseException) -> None:
        for c in self.callbacks:
            with contextlib.suppress(Exception):  # the search's own error is the one to raise
                c.on_search_error(exc)

    def close(self, say) -> None:
        first: BaseException | None = None
        for c in self.callbacks:
            try:
                c.close(say)
            except BaseException as exc:  # Ctrl-C while one waits: the others still close
                first = first or exc
        if first is not None:
            raise first
