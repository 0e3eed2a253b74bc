"""Hooks on the driver's loop, as Ray Tune's ``Callback`` is on its trial loop: what a search leaves behind beyond its
run folder (MLflow runs, TensorBoard files, the HTML report, the best network's weights) is written by a callback.

A search calls its callbacks in the order given, on the driver's main thread; every hook is optional::

    on_search_start(run)          the run folder is prepared, the plan made (``run``: the SearchRun)
    on_trial_end(trial, ranking)  a configuration completed, was stopped or failed
    on_search_end(result)         the results table and best.json are written (``result``: a SearchResult)
    on_search_error(exc)          the search stops without a result (an error, Ctrl-C)
    close(say)                    always, last: wait for what is still being written, say what went wrong

A hook must not raise for its own failures (a report that cannot be made costs the report, not the search): it says
one line through ``say`` instead.
"""

from __future__ import annotations


class Callback:
    """A no-op for every hook; subclasses override what they need."""

    def on_search_start(self, run) -> None:
        pass

    def on_trial_end(self, trial, ranking) -> None:
        pass

    def on_search_end(self, result) -> None:
        pass

    def on_search_error(self, exc: BaseException) -> None:
        pass

    def close(self, say) -> None:
        pass
