using System.CommandLine;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Worker;

string allocator = TorchRuntime.PrepareProcess(); // before any tensor exists

var root = new RootCommand("CondenseCluster worker: joins a coordinator's cluster and trains a model replica");
WorkerCommand.Configure(root);
root.Subcommands.Add(SelfTest.Command(allocator));
return Cli.Run(root, args);
