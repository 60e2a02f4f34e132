using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
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
        string seed = "";
        var started = new ManualResetEventSlim();
        var processes = new List<Process>();
        try
        {
            processes.Add(BackgroundProgram.Start("condense-coordinator.dll",
                ["train", "--host", "127.0.0.2", "--port", "0", "--control-host", "127.0.0.2", .. ClusterProcesses.FreeControlPorts,
                    "--local-workers", "0", "--workers", "4", "--stages", "2,2", "--growth", "4,8", "--data", BundledData.FashionMnistSubset,
                    "--batch-size", "48", "--lr", "0.01", "--stop-after", "6", "--recovery-steps", "0", "--out", Path.Combine(Folder, "run")],
                output, line =>
                {
                    var address = Regex.Match(line, @"coordinator at akka\.tcp://condense@(127\.0\.0\.2:\d+)");
                    if (!address.Success) return;
                    seed = address.Groups[1].Value;
                    started.Set();
                }));
            Assert.True(started.Wait(TimeSpan.FromSeconds(60)), $"the coordinator did not start:\n{Output()}");
            foreach (var (name, host) in new[] { ("machine-a-1", "127.0.0.3"), ("machine-a-2", "127.0.0.3"), ("machine-b-1", "127.0.0.4"), ("machine-b-2", "127.0.0.4") })
                processes.Add(BackgroundProgram.Start("condense-worker.dll",
                    ["--seed", seed, "--host", host, "--port", "0", "--data-port", "0", "--name", name, "--threads", "1"], output, _ => { }));

            var coordinator = processes[0];
            Assert.True(coordinator.WaitForExit(TimeSpan.FromMinutes(3)), $"the job did not end:\n{Output()}");
            coordinator.WaitForExit();
            string text = Output();
            log.WriteLine(text);
            Assert.True(coordinator.ExitCode == 0, text);
            // Each worker's Akka node and data plane are on its own address, and the ring ran between them.
            foreach (string machine in new[] { "a-1", "a-2" }) Assert.Matches($@"machine-{machine} registered \(cpu, 1 threads, data plane http://127\.0\.0\.3:\d+\)", text);
            foreach (string machine in new[] { "b-1", "b-2" }) Assert.Matches($@"machine-{machine} registered \(cpu, 1 threads, data plane http://127\.0\.0\.4:\d+\)", text);
            Assert.Contains("cluster formed: machine-a-1 (rank 0), machine-a-2 (rank 1), machine-b-1 (rank 2), machine-b-2 (rank 3)", text);
            Assert.Contains("[machine-a-2] ring generation 1: hierarchical: rank 1 of 2 on its host, rank 0 of 2 across hosts", text);
            Assert.Contains("[machine-b-1] ring generation 1: hierarchical: rank 0 of 2 on its host, rank 1 of 2 across hosts", text);
            Assert.Contains("all 4 replicas hold identical weights at step 6", text);
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
