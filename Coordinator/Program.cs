using System.CommandLine;
using CondenseCluster.Coordinator.Cli;
using CondenseCluster.Shared.Runtime;

// Before any tensor exists: keep freed tensor memory in the heap (see NativeAllocator).
string allocator = NativeAllocator.Configure();
TorchRuntime.QuietNativeLog();

var root = new RootCommand("CondenseCluster coordinator: trains CondenseNet on a cluster of workers");
root.Subcommands.Add(ModelCommands.Create());
root.Subcommands.Add(TrainCommand.Create(allocator));
root.Subcommands.Add(ServeCommand.Create(allocator));
foreach (var client in ControlCommands.Create()) root.Subcommands.Add(client);
return Cli.Run(root, args);
