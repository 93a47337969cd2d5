"""What the benchmarks share: the machine line their tables print, the measuring worker processes, resident
memory and its peak, and waiting for the device. Torch is imported only where it is used, so that the
database benchmark runs without it."""
import gc
import json
import os
import platform
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cpu_name():
    """The CPU model from /proc/cpuinfo where there is one, else what platform knows."""
    try:
        with open('/proc/cpuinfo') as f:
            return next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine_info(device='cpu'):
    """One line: CPU model, cores, torch version, GPU name if one is used."""
    import torch
    line = f'{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}'
    if str(device).startswith('cuda') and torch.cuda.is_available():
        line += f', GPU {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})'
    return line


def resolve_device(parser, device):
    """'cpu' or 'cuda' for a --device of auto / cpu / cuda (util.distributed.select_device's rule); a CUDA
    device that is not there is a usage error (exit status 2)."""
    from util.distributed import select_device
    from util.errors import ReIDError
    try:
        return select_device(device).type
    except ReIDError as err:
        parser.exit(2, f'error: {err}\n')


def sync(device):
    """Wait for the work queued on a CUDA device (timings end there, not when the launch returns)."""
    import torch
    if torch.device(device).type == 'cuda':
        torch.cuda.synchronize(device)


def timed(fn, steps, warmup, device):
    """Seconds of `steps` calls of fn() after `warmup` untimed ones, the device's queued work included."""
    import time
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return time.perf_counter() - t0


# ---------------------------------------------------------------- worker processes

def worker_env():
    """The environment of the measuring processes: OpenMP threads sleep instead of spinning while they wait
    (unless OMP_WAIT_POLICY is set already). With the default spinning, a CPU shared with any other busy
    process makes torch's threads wait on each other and steps run many times slower."""
    env = dict(os.environ)
    env.setdefault('OMP_WAIT_POLICY', 'PASSIVE')
    return env


def serve_worker(job, measure):
    """The worker side of run_worker: measure(**job) printed as one JSON line."""
    print(json.dumps(measure(**json.loads(job))))
    return 0


def run_worker(script, job):
    """`python script --worker JSON(job)` in a fresh process; its last stdout line parsed as JSON, or
    {'error': last stderr line} if it fails."""
    proc = subprocess.run([sys.executable, os.path.abspath(script), '--worker', json.dumps(job)],
                          cwd=ROOT, env=worker_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f'exit status {proc.returncode}']
        return {'error': tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- resident memory (Linux)

def rss_bytes():
    """Resident memory of this process now; None where /proc is missing."""
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except OSError:
        return None


def reset_peak_rss():
    """Reset VmHWM to the current RSS; False where the kernel does not allow it."""
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        return True
    except OSError:
        return False


def peak_rss_bytes(reset_ok):
    """The high-water mark of resident memory: since reset_peak_rss() if it succeeded, else since the start."""
    if reset_ok:
        with open('/proc/self/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1]) * 1024
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_memory(device, fn, cuda_total=True):
    """Run fn(); return (its result, peak bytes). On a GPU torch.cuda.max_memory_allocated during fn: all that
    the process holds then if cuda_total, else less what was allocated before. On the CPU the resident-memory
    high-water mark during fn less the resident memory before (None without Linux's /proc)."""
    import torch
    device = torch.device(device)
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        before = 0 if cuda_total else torch.cuda.memory_allocated(device)
        result = fn()
        return result, torch.cuda.max_memory_allocated(device) - before
    before, reset_ok = rss_bytes(), reset_peak_rss()
    result = fn()
    return result, None if before is None else peak_rss_bytes(reset_ok) - before
