using System.CommandLine;
using CondenseCluster.Coordinator.Cli;
using CondenseCluster.Shared.Runtime;

string allocator = TorchRuntime.PrepareProcess(); // before any tensor exists

var root = new RootCommand("CondenseCluster coordinator: trains CondenseNet on a cluster of workers");
root.Subcommands.Add(ModelCommands.Create());
root.Subcommands.Add(TrainCommand.Create(allocator));
root.Subcommands.Add(ServeCommand.Create(allocator));
foreach (var client in ControlCommands.Create()) root.Subcommands.Add(client);
return Cli.Run(root, args);
