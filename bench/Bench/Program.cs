using System.CommandLine;
using CondenseCluster.Bench;
using CondenseCluster.Bench.MicroBenchmarks;
using CondenseCluster.Shared.Runtime;

string allocator = TorchRuntime.PrepareProcess(); // before any tensor exists

var root = new RootCommand("CondenseCluster benchmarks (bench/README.md): micro-benchmarks, interleaved inference timings, the image loader's throughput, images/s per core at ImageNet's 224x224, a worker's memory over a long run");
root.Subcommands.Add(MicroSuite.Command(allocator));
root.Subcommands.Add(InferenceTiming.Command(allocator));
root.Subcommands.Add(LoaderBenchmark.Command());
root.Subcommands.Add(ImageNetBenchmark.Command(allocator));
root.Subcommands.Add(MemoryBenchmark.Command(allocator));
return Cli.Run(root, args);
