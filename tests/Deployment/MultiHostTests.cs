using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Tests.Cluster;
using Xunit;
using Xunit.Abstractions;

namespace CondenseCluster.Tests.Deployment;

/// <summary>
/// Several machines simulated on one: the coordinator and two machines of two workers each bound to a loopback
/// address of their own (127.0.0.2, .3, .4), nobody on 127.0.0.1, every worker given the coordinator's address as a
/// seed exactly as on a separate host (README "Several machines"). Two machines of two workers sum hierarchically:
/// within each machine over Unix sockets, across them over TCP.
/// </summary>
[Collection(ClusterProcesses.Name)]
public class MultiHostTests(ITestOutputHelper log) : TempFolderTest
{
    [Fact]
    public void ACoordinatorAndTwoMachinesOfTwoWorkersOnTheirOwnAddressesTrainTogether()
    {
        var output = new StringBuilder();
        string Output() { lock (output) return output.ToString(); }
        string run = Path.Combine(Folder, "run");
        (string Name, string Host)[] machines = [("machine-a-1", "127.0.0.3"), ("machine-a-2", "127.0.0.3"), ("machine-b-1", "127.0.0.4"), ("machine-b-2", "127.0.0.4")];
        var processes = new List<Process>();
        try
        {
            processes.Add(BackgroundProgram.Start("condense-coordinator.dll",
                ["train", "--host", "127.0.0.2", "--port", "0", "--control-host", "127.0.0.2", .. ClusterProcesses.FreeControlPorts,
                    "--local-workers", "0", "--workers", "4", "--stages", "2,2", "--growth", "4,8", "--data", BundledData.FashionMnistSubset,
                    "--batch-size", "48", "--lr", "0.01", "--stop-after", "6", "--recovery-steps", "0", "--out", run],
                output, _ => { }));
            var waiting = Stopwatch.StartNew();
            while (!File.Exists(Path.Combine(run, "metrics.jsonl")) || RunEvents.Of<CoordinatorWaiting>(run).Length == 0)
            {
                Assert.True(waiting.Elapsed < TimeSpan.FromSeconds(60), $"the coordinator did not start:\n{Output()}");
                Thread.Sleep(100);
            }
            var announced = RunEvents.Single<CoordinatorWaiting>(run);
            Assert.StartsWith("akka.tcp://condense@127.0.0.2:", announced.Address);
            string seed = announced.Seed;
            foreach (var (name, host) in machines)
                processes.Add(BackgroundProgram.Start("condense-worker.dll",
                    ["--seed", seed, "--host", host, "--port", "0", "--data-port", "0", "--name", name, "--threads", "1"], output, _ => { }));

            var coordinator = processes[0];
            Assert.True(coordinator.WaitForExit(TimeSpan.FromMinutes(3)), $"the job did not end:\n{Output()}");
            coordinator.WaitForExit();
            string text = Output();
            log.WriteLine(text);
            Assert.True(coordinator.ExitCode == 0, text);
            // Each worker's Akka node and data plane are on its own address, and the ring ran between them.
            var arrived = RunEvents.Of<WorkerArrived>(run).ToDictionary(w => w.Worker);
            foreach (var (name, host) in machines)
            {
                Assert.Equal(("cpu", 1), (arrived[name].Device, arrived[name].Threads));
                Assert.Matches($@"^http://{Regex.Escape(host)}:\d+$", arrived[name].Endpoint);
            }
            Assert.Equal(machines.Select(m => m.Name), RunEvents.Single<ClusterFormed>(run).Ranks);
            // The workers' own lines (no metrics.jsonl of theirs records the ring's layout).
            Assert.Contains("[machine-a-2] ring generation 1: hierarchical: rank 1 of 2 on its host, rank 0 of 2 across hosts", text);
            Assert.Contains("[machine-b-1] ring generation 1: hierarchical: rank 0 of 2 on its host, rank 1 of 2 across hosts", text);
            var agree = RunEvents.Single<ReplicasAgree>(run);
            Assert.Equal((4, 6L), (agree.Workers, agree.Step));
            // No line of the programs' own names 127.0.0.1. Akka's log lines are left out: the kernel picks 127.0.0.1 as
            // the source address of outgoing loopback connections, and Akka may name those sockets in a warning.
            var ownLines = text.Split('\n').Where(line => !Regex.IsMatch(line, @"^\s*\[(DEBUG|INFO|WARNING|ERROR)\]\["));
            Assert.DoesNotContain(ownLines, line => line.Contains("127.0.0.1"));
        }
        finally
        {
            foreach (var process in processes) BackgroundProgram.End(process, TimeSpan.FromSeconds(15));
        }
    }
}
