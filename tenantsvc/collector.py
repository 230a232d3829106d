"""The garbage collector's settings for a serving worker.

CPython's cyclic collector runs a young collection whenever 700 more container objects have
been allocated than freed, and every so often a full one, which walks every object the process
holds. A worker's in-flight requests keep a few thousand objects alive, so the young threshold
is crossed every few dozen requests, and enough of those objects survive into the old
generation to set off full collections. Measured on W3 (2 workers, 50 tenants): the collector
took 38 of each request's 540 microseconds of service CPU, and each full collection of a
worker's ~145,000 objects took 50-80 ms (150 ms over 10,000 tenants, ~320,000 objects), a
pause every in-flight request waits out.

- A young threshold of 10,000: a request's own garbage is freed by reference counting, so
  collections now run as cyclic garbage accumulates (10,000 objects, a few MB at most).
- ``gc.freeze()`` once the app has started: the modules, routes, schemas and settings alive
  then live as long as the process, so no full collection needs to walk them again (122,000
  of those 145,000 objects). ``gc.collect()`` first, so no garbage is frozen.

W3 went from 2,665 to 2,924 rps and its p99 from 66 to 26 ms; over 10,000 tenants from 2,101
to 2,267 rps, p99 from 158 to 56 ms (bench/README.md).
"""

import gc


def tune_collector(young_threshold: int, freeze: bool) -> None:
    """``young_threshold`` 0 leaves the interpreter's thresholds as they are."""
    if young_threshold:
        _, older, oldest = gc.get_threshold()
        gc.set_threshold(young_threshold, older, oldest)
    if freeze:
        gc.collect()
        gc.freeze()
