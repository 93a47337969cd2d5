"""The machine line the benchmark tables print."""
import platform


def cpu_name():
    """The CPU model from /proc/cpuinfo where there is one, else what platform knows."""
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()
