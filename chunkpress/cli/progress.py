"""Running the work with a progress display."""

from __future__ import annotations


def run(work, label):
    """Compute ``work`` (a delayed, or a callable that computes), showing a progress bar."""
    from dask.delayed import Delayed

    try:
        from distributed import default_client, futures_of, progress

        client = default_client()
    except (ImportError, ValueError):  # no distributed client: the local scheduler
        client = None
    print(f"{label}:", flush=True)
    if client is None:
        from dask.diagnostics import ProgressBar

        with ProgressBar(minimum=0):
            return work.compute() if isinstance(work, Delayed) else work()
    if isinstance(work, Delayed) and hasattr(work, "finish"):
        # a chunkpress write: its chunks on the cluster, then published in this process
        try:
            future = client.compute(work.writes)
            progress(future)
            print()
            results = future.result()
        except BaseException:
            work.abort()
            raise
        return work.finish(results)
    if isinstance(work, Delayed):
        future = client.compute(work)
        progress(future)
        print()
        return future.result()
    result = work()
    futures = futures_of(list(getattr(result, "arrays", {}).values()))
    if futures:
        progress(futures)
        print()
    return result
