"""Timing shared by the PyTorch peer scripts."""
import time


def median_seconds(fn, reps):
    """Median wall time of fn() over reps calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    times.sort()
    return times[len(times) // 2]
