"""Seconds since this process started (for "time to first step" figures)."""
import os


def seconds_since_process_start() -> float | None:
  """Wall-clock seconds since the OS started this process (Linux /proc); None where unknown."""
  try:
    with open('/proc/self/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    start_ticks = int(fields[19])  # Field 22 of stat(5): start time after boot, in clock ticks.
    with open('/proc/uptime') as f:
      uptime = float(f.read().split()[0])
    return uptime - start_ticks / os.sysconf('SC_CLK_TCK')
  except (OSError, ValueError, IndexError):
    return None


def describe(seconds: float | None) -> str:
  return 'unknown' if seconds is None else f'{seconds:.1f}s'

