"""Run every benchmark, each in its own process, and print one markdown summary for the README.

    python benchmarks/run_all.py                         # quick settings, under 10 minutes on 2 CPU cores
    python benchmarks/run_all.py --full                  # real sizes: 1.19 M-frame scan, paper-sized batches
    python benchmarks/run_all.py --device cuda           # model and training benchmarks on the GPU at the
                                                         # paper's batch (P=8 K=4 S=8, 256x128)
    python benchmarks/run_all.py --only train metric --out results.md

Benchmarks: scan (MARS and LS-VID database builders), metric (MARS evaluation), rerank (k-reciprocal
re-ranking), input (JPEG pipeline per worker), models (parameters, GFLOPs, attention cost), train (training
and evaluation throughput per model type and precision). Their own output goes to stderr while they run; the
summary (machine, an overview table, then each benchmark's output) goes to stdout, and to --out if given.
"""
import argparse
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time

from benchmarks.machine import machine_info, resolve_device, worker_env

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

NAMES = ('scan', 'metric', 'clothes_metric', 'rerank', 'input', 'models', 'train', 'onnx', 'cameras')
WHAT = {
    'scan': 'MARS and LS-VID database builders vs plain listings, trees of empty frame files',
    'metric': 'MARS metric, MARS-sized input: vectorised vs per-query loops',
    'clothes_metric': 'every MEVID protocol and mINP, MEVID-sized input: vectorised vs CAL\'s loops',
    'rerank': 'k-reciprocal re-ranking, MARS-sized input: vectorised torch vs the released loops',
    'input': 'JPEG -> clip tensors per DataLoader worker vs original PIL pipeline',
    'models': 'params, GFLOPs, eval latency, train step sdpa vs explicit attention',
    'train': 'train / eval clips/s and peak memory per model type and precision',
    'onnx': 'exported ONNX models: onnxruntime CPU clips/s vs PyTorch CPU eval',
    'cameras': 'tracklets_from_video.py vs decoding alone; associate.py clustering vs the full matrix',
}
QUICK_SCAN_FRAMES = 200_000


def benchmark_args(name, args, json_path):
    """Command-line arguments of one benchmark for the chosen sizes."""
    gpu = args.device == 'cuda'
    if name == 'scan':
        return [] if args.full or args.scan_full else ['--frames', str(args.scan_frames)]
    if name == 'metric':
        return [] if args.full else ['--loop_queries', '100', '--repeat', '2']
    if name == 'rerank':
        return ([] if args.full else ['--scale', '0.3']) + ['--device', args.device, '--json', json_path]
    if name == 'input':
        return ([] if args.full else ['--frames', '400', '--repeats', '2']) + ['--device', args.device]
    if name == 'models':
        size = ['--P', '8', '--K', '4'] if gpu else [] if args.full else ['--quick']
        return size + ['--device', args.device]
    if name == 'train':
        return ([] if args.full or gpu else ['--quick']) + ['--device', args.device, '--json', json_path]
    if name == 'onnx':
        return [] if args.full else ['--quick']
    if name == 'clothes_metric':
        return ['--device', args.device] + ([] if args.full else ['--repeat', '2'])
    if name == 'cameras':
        return [] if args.full else ['--frames', '100', '--repeat', '1', '--large', '5000']
    raise ValueError(name)


def run(name, argv, timeout):
    """Run one benchmark, echoing its stdout to stderr live. Returns (rc or 'timeout', stdout, stderr, seconds)."""
    cmd = [sys.executable, os.path.join('benchmarks', f'bench_{name}.py')] + argv
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, bufsize=1)
    err = []
    reader = threading.Thread(target=lambda: err.extend(proc.stderr), daemon=True)
    reader.start()
    timed_out = threading.Event()

    def stop():  # SIGINT first so the benchmark removes its temporary files, then SIGKILL
        timed_out.set()
        proc.send_signal(signal.SIGINT)
        killer = threading.Timer(15, proc.kill)
        killer.daemon = True
        killer.start()

    timer = threading.Timer(timeout, stop) if timeout else None
    if timer:
        timer.daemon = True
        timer.start()
    out = []
    for line in proc.stdout:
        out.append(line)
        sys.stderr.write('    ' + line)
        sys.stderr.flush()
    rc = proc.wait()
    reader.join()
    if timer:
        timer.cancel()
    return ('timeout' if timed_out.is_set() else rc), ''.join(out), ''.join(err), time.perf_counter() - start


# ---------------------------------------------------------------- one headline per benchmark

def _row(text, start):
    """Cells of the first markdown table row whose first cell starts with `start`."""
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip('|').split('|')]
        if line.lstrip().startswith('|') and cells[0].startswith(start):
            return cells
    return None


def headline(name, out, json_path):
    try:
        if name == 'scan':
            scan, build = _row(out, 'our scan'), _row(out, 'our build')
            return f'our scan {scan[-1]}, our build {build[-1]} the original-style speed'
        if name == 'metric':  # one table per feature set, each after a "features: <name>, ..." line
            parts = []
            for block in out.split('features: ')[1:]:
                ours, orig = _row(block, 'evaluate_mars ('), _row(block, 'original')
                parts.append(f'{block.split(",")[0].split(" (")[0]} features: ours {ours[2]} s, the original-style '
                             f'loop {orig[5]} our time ({orig[6]} without the shared distance matrix), '
                             f'agree {orig[7]}')
            return '; '.join(parts)
        if name == 'rerank':
            with open(json_path) as f:
                r = json.load(f)
            ours, ref = r['ours']['rerank'], r['reference']['rerank']
            return (f'N={r["n"]:,}: after the distance matrix ours {ours["wall"]:.2f} s, the released loops '
                    f'{ref["wall"]:.1f} s ({ref["wall"] / ours["wall"]:.0f}x), peak {ours["peak"] / 2**20:,.0f} vs '
                    f'{ref["peak"] / 2**20:,.0f} MiB; max difference {r["max_abs_diff"]:.1e}, CMC and mAP '
                    f'{"equal" if r["scores_equal"] else "DIFFERENT"}')
        if name == 'input':
            best = {}
            for line in out.splitlines():
                cells = [c.strip() for c in line.split('|')]
                if len(cells) == 4 and cells[1] == 'ours (auto)':
                    best[cells[0]] = cells[3]
            return 'ours (auto) vs original per worker: ' + ', '.join(f'{v} ({k} source)' for k, v in best.items())
        if name == 'models':
            nl = _row(out, 'resnet50_NL')
            return f'resnet50_NL train step {nl[4]} s, peak {nl[5]} GB (sdpa / explicit)'
        if name == 'train':
            with open(json_path) as f:
                results = json.load(f)['results']
            by = {(r['model_type'], r['config']): r for r in results if 'error' not in r}
            parts = []
            for model_type in ('resnet50_NL', 'resnet50_NL_stripe_hr'):
                base = by.get((model_type, 'fp32-explicit'))
                if not base:
                    continue
                cells = []
                for config in ('fp32-sdpa', 'bf16-cl-sdpa', 'fp16-cl-sdpa'):
                    r = by.get((model_type, config))
                    if r:
                        mem = (f' / {r["peak_bytes"] / base["peak_bytes"]:.2f}x'
                               if r['peak_bytes'] and base['peak_bytes'] else '')
                        cells.append(f'{config} {r["train_clips_per_s"] / base["train_clips_per_s"]:.2f}x{mem}')
                parts.append(f'{model_type}: ' + ', '.join(cells))
            return 'train clips/s / peak memory vs fp32-explicit: ' + '; '.join(parts) if parts else ''
        if name == 'onnx':
            rows = [_row(out, t) for t in ('resnet50_s1', 'resnet50_NL_stripe_hr')]
            return ', '.join(f'{r[0]} onnxruntime {r[3]} PyTorch, max rel. diff {r[4]}' for r in rows if r)
    except (TypeError, IndexError, KeyError, OSError, ValueError, ZeroDivisionError):
        pass
    return ''


# ---------------------------------------------------------------- driver

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     epilog='benchmarks: ' + ', '.join(NAMES))
    parser.add_argument('--device', default='auto', choices=['auto', 'cpu', 'cuda'],
                        help='device of the models and train benchmarks; cuda runs them at the paper batch')
    parser.add_argument('--full', action='store_true', help='real sizes everywhere (takes much longer on a CPU)')
    parser.add_argument('--scan_full', action='store_true', help='the full 1,191,003-frame scan (implied by --full)')
    parser.add_argument('--scan_frames', type=int, default=QUICK_SCAN_FRAMES,
                        help=f'frames of the reduced scan tree (default {QUICK_SCAN_FRAMES:,})')
    parser.add_argument('--only', nargs='+', choices=NAMES, default=list(NAMES), help='run only these')
    parser.add_argument('--timeout', type=float, default=0, help='seconds per benchmark before it is killed (0: none)')
    parser.add_argument('--out', metavar='PATH', help='also write the markdown summary here')
    args = parser.parse_args(argv)
    args.device = resolve_device(parser, args.device)

    command = 'python benchmarks/run_all.py' + ''.join(' ' + shlex.quote(a) for a in
                                                        (sys.argv[1:] if argv is None else argv))
    load_start, started = os.getloadavg(), datetime.datetime.now()
    rows, sections = [], []
    with tempfile.TemporaryDirectory(prefix='bench_') as tmp:
        for i, name in enumerate(args.only, 1):
            json_path = os.path.join(tmp, f'{name}.json')
            bench_argv = benchmark_args(name, args, json_path)
            shown = ' '.join(shlex.quote(a) for a in bench_argv if a not in ('--json', json_path))
            line = f'python benchmarks/bench_{name}.py {shown}'.rstrip()
            print(f'[{i}/{len(args.only)}] {line}', file=sys.stderr, flush=True)
            rc, out, err, seconds = run(name, bench_argv, args.timeout)
            status = ('ok' if rc == 0 else f'timed out after {args.timeout:g} s' if rc == 'timeout'
                      else f'failed (exit {rc})')
            print(f'[{i}/{len(args.only)}] {name}: {status} in {seconds:.0f} s', file=sys.stderr, flush=True)
            rows.append((name, WHAT[name], status, seconds, headline(name, out, json_path) if rc == 0 else
                         (err.strip().splitlines() or [''])[-1][:200]))
            body = out.rstrip()
            if rc != 0:
                body += '\n\n[stderr, last lines]\n' + '\n'.join(err.rstrip().splitlines()[-15:])
            sections.append(f'### {name}\n\n`{line}`\n\n```text\n{body}\n```\n')

    total = sum(r[3] for r in rows)
    summary = [
        f'## Benchmarks ({"full" if args.full else "quick"} settings, device {args.device})',
        '',
        f'- machine: {machine_info(args.device)}',
        f'- command: `{command}` ({started:%Y-%m-%d %H:%M}, {total / 60:.1f} min in all)',
        f'- load average (1 min) at start {load_start[0]:.2f}, at end {os.getloadavg()[0]:.2f}; '
        f'OMP_WAIT_POLICY={worker_env()["OMP_WAIT_POLICY"]}',
        '',
        '| benchmark | measures | status | wall s | headline |',
        '|---|---|---|---:|---|',
    ]
    summary += [f'| {n} | {w} | {s} | {t:.0f} | {h} |' for n, w, s, t, h in rows]
    text = '\n'.join(summary) + '\n\n' + '\n'.join(sections)
    print(text)
    if args.out:
        with open(args.out, 'w') as f:
            f.write(text)
    return 0 if all(r[2] == 'ok' for r in rows) else 1


if __name__ == '__main__':
    sys.exit(main())
