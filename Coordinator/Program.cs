using System.CommandLine;
using CondenseCluster.Coordinator.Cli;

var root = new RootCommand("CondenseCluster coordinator: trains CondenseNet on a cluster of workers");
root.Subcommands.Add(ModelCommands.Create());
return Cli.Run(root, args);
