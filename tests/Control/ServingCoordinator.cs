using System.Diagnostics;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using CondenseCluster.Shared.Control;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using Grpc.Core;
using Grpc.Net.Client;
using Xunit;

namespace CondenseCluster.Tests.Control;

/// <summary>
/// A coordinator process (<c>condense-coordinator serve</c>) with two local workers, its control plane on free
/// loopback ports and a known token, in a temporary folder removed afterwards. SIGTERM ends it as Kubernetes would.
/// </summary>
public sealed class ServingCoordinator : IDisposable
{
    public const string Token = "a-test-token-of-the-control-api";
    readonly StringBuilder output = new();
    readonly Process process;
    readonly GrpcChannel channel;

    public ServingCoordinator() : this([]) { }

    /// <param name="serveArgs">more flags of <c>serve</c></param>
    internal ServingCoordinator(string[] serveArgs)
    {
        Folder = Directory.CreateTempSubdirectory("cc-control-").FullName;
        var started = new ManualResetEventSlim();
        process = BackgroundProgram.Start("condense-coordinator.dll",
            ["serve", "--port", "0", "--api-port", "0", "--dashboard-port", "0", "--local-workers", "2", "--worker-threads", "1", .. serveArgs], output, line =>
            {
                var addresses = Regex.Match(line, @"control API at (\S+) \(gRPC\); dashboard at (\S+)/ ");
                if (!addresses.Success) return;
                (ApiAddress, WebAddress) = (addresses.Groups[1].Value, addresses.Groups[2].Value);
                started.Set();
            }, new Dictionary<string, string> { ["CONDENSE_CONTROL_TOKEN"] = Token });
        Assert.True(started.Wait(TimeSpan.FromSeconds(60)), $"the coordinator did not start its control plane:\n{Output}");
        channel = GrpcChannel.ForAddress(ApiAddress);
        Client = new Shared.Control.Control.ControlClient(channel);
    }

    public string Folder { get; }
    public string ApiAddress { get; private set; } = "";
    public string WebAddress { get; private set; } = "";
    public Shared.Control.Control.ControlClient Client { get; }
    public GrpcChannel Channel => channel;
    public string Output { get { lock (output) return output.ToString(); } }

    public static Metadata Bearer(string token = Token) => new() { { "authorization", $"Bearer {token}" } };

    /// <summary>
    /// The tiny job of these tests as the API takes it: 125 steps of batch 48 on the bundled subset, condensing
    /// complete (C = 4) before step 63.
    /// </summary>
    public static string TinyJob(int epochs = 1) => JsonSerializer.Serialize(new TrainingOptions
    {
        Arch = "tiny", Model = TinyModel,
        Dataset = "fashion-mnist", DataDir = BundledData.FashionMnistSubset, Epochs = epochs, BatchSize = 48, MicroBatches = 2, LearningRate = 0.01,
        Seed = 7, RecoverySteps = 0,
    });

    public static CondenseNetConfig TinyModel { get; } = new() { Stages = [2, 2], Growth = [4, 8], InChannels = 1, InputSize = 32, NumClasses = 10 };

    /// <summary>Polls the status until <paramref name="done"/> holds (or fails after <paramref name="seconds"/>).</summary>
    public JobStatus WaitFor(Func<JobStatus, bool> done, string what, int seconds = 120)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            var status = Client.GetStatus(new GetStatusRequest(), Bearer());
            if (done(status)) return status;
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(seconds), $"waited in vain for {what}; last status {status}:\n{Output}");
            Thread.Sleep(200);
        }
    }

    public void Dispose()
    {
        channel.Dispose();
        BackgroundProgram.Signal(process, "TERM");
        BackgroundProgram.End(process, TimeSpan.FromSeconds(30));
        Directory.Delete(Folder, recursive: true);
    }
}
