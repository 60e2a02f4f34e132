"""One PyTorch gloo rank for bench/AllReduce, driven over stdin/stdout like the bench's own ranks, so that gloo's
all_reduce and ours are timed the same way in one run (bench/README.md).

usage: python3 bench/pytorch/allreduce_rank.py RANK WORLD_SIZE PORT
stdin: "buffer FLOATS", "go", "quit"; stdout: "ready" once joined and after each buffer, "done START END" after each
go: when the all_reduce was entered and left, in nanoseconds of CLOCK_MONOTONIC, the clock the bench's own ranks read."""
import sys
import time

import torch
import torch.distributed as dist


def pattern(n):
    # The bench's own pattern: small integers, whose sums float32 holds exactly.
    return (torch.arange(n) % 251 - 125).float()


def main():
    rank, world, port = (int(a) for a in sys.argv[1:4])
    torch.set_num_threads(1)
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}', rank=rank, world_size=world)
    print('ready', flush=True)
    base = values = expected = None
    for line in sys.stdin:
        words = line.split()
        if words[0] == 'buffer':
            base = pattern(int(words[1]))
            values, expected = base * (rank + 1), base * (world * (world + 1) // 2)
            print('ready', flush=True)
        elif words[0] == 'go':
            start = time.monotonic_ns()
            dist.all_reduce(values)
            end = time.monotonic_ns()
            # Checked and refilled off the clock, as the bench's ranks do.
            if not torch.equal(values, expected):
                sys.exit(f'gloo rank {rank}: the all_reduce summed wrongly')
            values.copy_(base * (rank + 1))
            print(f'done {start} {end}', flush=True)
        elif words[0] == 'quit':
            break
    dist.destroy_process_group()


if __name__ == '__main__':
    main()
