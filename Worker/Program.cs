using System.CommandLine;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Worker;

// Before any tensor exists: keep freed tensor memory in the heap (see NativeAllocator).
string allocator = NativeAllocator.Configure();
TorchRuntime.QuietNativeLog();

var root = new RootCommand("CondenseCluster worker: joins a coordinator's cluster and trains a model replica");
WorkerCommand.Configure(root);
root.Subcommands.Add(SelfTest.Command(allocator));
return Cli.Run(root, args);
