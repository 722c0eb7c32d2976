"""How long ``--smoke`` takes on given configs: the whole command, as a user runs it (start-up included).

Meant for the largest models of torchdistill's own sample configs (``configs/sample/`` of its repository, which is not
part of this one; point ``--configs`` at a checkout of it) and of this plugin's ``configs/``. Each config is run
``--repeats`` times one after the other; the table gives the median and the range. A command that fails is listed
with its last line.

    python benchmarks/smoke_times.py --threads 1 --configs \\
        ~/torchdistill/configs/sample/cifar10/ce/resnet1202-final_run.yaml \\
        ~/torchdistill/configs/sample/cifar100/ce/densenet_bc_k40_depth190-hyperparameter_tuning.yaml
"""
import argparse
import os
import statistics
import subprocess
import sys
import time


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--configs', nargs='+', required=True)
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--threads', type=int, default=None, help='OMP_NUM_THREADS of each command')
    args = parser.parse_args()
    env = dict(os.environ)
    if args.threads:
        env['OMP_NUM_THREADS'] = str(args.threads)
    print('| config | median (s) | min | max | result |')
    print('|---|---:|---:|---:|---|')
    for config in args.configs:
        times, result = [], 'passed'
        for _ in range(args.repeats):
            start = time.perf_counter()
            done = subprocess.run([sys.executable, '-m', 'ttm_torchdistill', '--config', config, '--smoke'],
                                  capture_output=True, text=True, env=env)
            times.append(time.perf_counter() - start)
            if done.returncode != 0:
                result = (done.stderr.strip().splitlines() or ['no output'])[-1][:120]
                break
        name = os.path.join(*config.split(os.sep)[-3:])
        print(f'| {name} | {statistics.median(times):.1f} | {min(times):.1f} | {max(times):.1f} | {result} |',
              flush=True)
    print(f'\ncommand: python benchmarks/smoke_times.py ' + ' '.join(sys.argv[1:]))
    return 0


if __name__ == '__main__':
    sys.exit(main())
