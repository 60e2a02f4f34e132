"""PyTorch DDP baseline (gloo on 127.0.0.1): what a user would run instead of CondenseCluster on several local
processes. Each of N processes trains the same CondenseNet (official module tree) on its share of a global batch, with
1 intra-op thread, and reports the median step time; rank 0 also times a gloo all_reduce of all gradients.

usage: python3 bench/pytorch/ddp_step.py [--processes 2] [--global-batch 64] [--channels 3] [--steps 20] [--warmup 3]"""
import argparse
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from training_steps import add_arguments, allocator, condensenet86, timed_steps


def worker(rank, a):
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{a.port}', rank=rank, world_size=a.processes)
    model = torch.nn.parallel.DistributedDataParallel(condensenet86(a.channels))
    local = a.global_batch // a.processes
    times = timed_steps(model, local, a.channels, a.warmup, a.steps)
    grads = torch.zeros(sum(p.numel() for p in model.parameters()))
    reduce_times = []
    for _ in range(20):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(grads)
        reduce_times.append(time.perf_counter() - start)
    if rank == 0:
        print(f'pytorch {torch.__version__} DDP gloo, {a.processes} processes x 1 thread x {local} images: '
              f'median step {statistics.median(times) * 1000:.0f} ms over {a.steps} steps; '
              f'all_reduce of {grads.numel():,} floats ({grads.numel() * 4 / 1e6:.1f} MB): median '
              f'{statistics.median(reduce_times) * 1000:.2f} ms (allocator: {allocator()})', flush=True)
    dist.destroy_process_group()


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--processes', type=int, default=2)
    p.add_argument('--global-batch', type=int, default=64)
    add_arguments(p, channels=3, steps=20, warmup=3)
    p.add_argument('--port', type=int, default=29517)
    a = p.parse_args()
    mp.spawn(worker, args=(a,), nprocs=a.processes, join=True)


if __name__ == '__main__':
    main()
