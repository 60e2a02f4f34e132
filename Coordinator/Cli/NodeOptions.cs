using System.CommandLine;
using CondenseCluster.Coordinator.Cluster;
using CondenseCluster.Coordinator.Control;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Coordinator.Cli;

/// <summary>
/// Options of the coordinator node that <c>train</c> and <c>serve</c> share: its cluster (Akka port, local workers,
/// how replicas are kept in step) and its control plane (API, dashboard, token); and running the node with them.
/// </summary>
sealed class NodeOptions
{
    /// <summary>What a graceful stop does and how long it takes, for the commands' help.</summary>
    public const string GracefulStop = "the step in flight completes (one more step at most, when a worker had already cast that step's stop vote), " +
        "rank 0's state is fetched and written as a checkpoint, and the job ends; a second signal, or stop --now, stops at once";

    readonly Option<int> localWorkers = new("--local-workers") { Description = "worker processes to start on this machine for each job (0: only external workers)", DefaultValueFactory = _ => 2 };
    readonly Option<int?> workers = new("--workers") { Description = "workers a job waits for before it starts (default: --local-workers, at least 1)" };
    readonly Option<int> workerThreads = new("--worker-threads") { Description = "libtorch intra-op threads of each local worker", DefaultValueFactory = _ => 1 };
    readonly Option<string> host = new("--host") { Description = "address workers reach the coordinator at", DefaultValueFactory = _ => "127.0.0.1" };
    readonly Option<int> port = new("--port") { Description = "the coordinator's Akka port, which workers name as --seed (0: a free one)", DefaultValueFactory = _ => 4053 };
    readonly Option<string?> config = new("--config") { Description = "HOCON file overriding the cluster defaults (ports, failure detector)" };
    readonly Option<int> checksumEvery = new("--checksum-every") { Description = "workers report a weight checksum every N steps", DefaultValueFactory = _ => 10 };
    readonly Option<double> bucket = new("--bucket-mb") { Description = "gradients cross the ring in buckets of this many MB, each sent while backward computes the ones before it", DefaultValueFactory = _ => 1 };
    readonly Option<bool> sendMaskedGradients = new("--send-masked-gradients") { Description = "also send the gradients that condensed layers' masks make zero (to compare; the result is the same)" };
    readonly Option<string> gradientPrecision = new("--gradient-precision") { Description = "fp32, or fp16: gradients cross the ring as half floats (half the bytes, summed to about 3 significant digits)", DefaultValueFactory = _ => "fp32" };
    readonly Option<string> topology = new("--ring-topology")
    {
        Description = "auto: where workers share hosts (the same --host), sum within each host, then across hosts in a ring of one worker per host; flat: one ring of every worker",
        DefaultValueFactory = _ => "auto",
    };
    readonly Option<string> controlHost = new("--control-host") { Description = "address the control API and the dashboard listen on (0.0.0.0: every interface)", DefaultValueFactory = _ => "127.0.0.1" };
    readonly Option<int> apiPort = new("--api-port") { Description = "port of the gRPC control API (0: a free one)", DefaultValueFactory = _ => 4080 };
    readonly Option<int> httpPort = new("--dashboard-port") { Description = "port of the web dashboard and /metrics (0: a free one)", DefaultValueFactory = _ => 4081 };
    readonly Option<string?> tokenFile = new("--token-file") { Description = $"file holding the control API token (default: ${ControlToken.EnvironmentVariable}, else {ControlToken.DefaultFile}, generated on first start)" };
    public readonly Option<string> Device = new("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
    public readonly Option<int> LoaderThreads = new("--loader-threads") { Description = "threads that decode and augment images", DefaultValueFactory = _ => 1 };

    public IEnumerable<Option> All => [localWorkers, workers, workerThreads, host, port, config, checksumEvery, bucket, sendMaskedGradients, gradientPrecision, topology, controlHost, apiPort, httpPort, tokenFile, Device, LoaderThreads];

    /// <summary>Workers a job waits for: --workers, else the local ones (at least one).</summary>
    public int ExpectedWorkers(ParseResult result)
    {
        int started = result.GetValue(localWorkers);
        if (started < 0) throw new ArgumentException($"--local-workers {started} must not be negative");
        int expected = result.GetValue(workers) ?? Math.Max(1, started);
        if (expected < Math.Max(1, started)) throw new ArgumentException($"--workers {expected} must be at least 1 and at least --local-workers {started}");
        return expected;
    }

    /// <summary>
    /// Starts the coordinator node and its control plane, runs <paramref name="body"/> with them, and shuts both down.
    /// The first SIGINT (Ctrl+C) or SIGTERM stops the running job gracefully (<see cref="GracefulStop"/>); a second one
    /// stops it at once. <paramref name="body"/>'s token is cancelled at the first.
    /// </summary>
    public int Run(ParseResult result, string allocator, Func<CoordinatorNode, CancellationToken, Task<int>> body)
    {
        var cluster = new ClusterSettings(new ClusterEndpoint(result.GetValue(host)!, result.GetValue(port), null, result.GetValue(config)),
            result.GetValue(localWorkers), ExpectedWorkers(result), Math.Max(1, result.GetValue(workerThreads)), result.GetValue(Device)!,
            Math.Max(1, result.GetValue(checksumEvery)), BucketFloats(result.GetValue(bucket)), result.GetValue(sendMaskedGradients),
            GradientPrecision(result.GetValue(gradientPrecision)!), Topology(result.GetValue(topology)!));
        var defaults = new RunSettings
        {
            Device = TorchRuntime.ParseDevice(result.GetValue(Device)!), OutputFolder = ".", LoaderThreads = Math.Max(1, result.GetValue(LoaderThreads)),
            Allocator = allocator,
        };
        var console = ConsoleProgress.OnConsole();
        var token = ControlToken.Resolve(result.GetValue(tokenFile), line => console.Event(new Notice(line)));
        var monitor = new JobMonitor();
        var metrics = new PrometheusExporter(monitor);
        using var node = new CoordinatorNode(cluster, defaults, monitor, new Observers(console, metrics));
        var control = ControlServer.StartAsync(new ControlSettings(result.GetValue(controlHost)!, result.GetValue(apiPort), result.GetValue(httpPort)),
            token, monitor, metrics, node).GetAwaiter().GetResult();
        try
        {
            console.Event(new Notice($"control API at {control.ApiAddress} (gRPC); dashboard at {control.WebAddress}/ ; metrics at {control.WebAddress}/metrics"));
            using var interrupted = new CancellationTokenSource();
            using var signals = new StopSignals((signal, repeated) =>
            {
                console.Event(new Notice(repeated ? $"{signal} again: stopping the job at once"
                    : $"{signal}: stopping the job after the step in flight, with a checkpoint (send it again to stop at once)"));
                _ = StopRunning(node, signal, now: repeated);
                interrupted.Cancel();
            });
            return body(node, interrupted.Token).GetAwaiter().GetResult();
        }
        finally
        {
            control.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }

    /// <summary>Stops the running job if there is one (gracefully, or <paramref name="now"/>), and waits for it to end.</summary>
    public static async Task StopRunning(CoordinatorNode node, string by, bool now)
    {
        try { await node.StopAsync(by, now); }
        catch (InvalidOperationException) { } // no job runs
    }

    static WirePrecision GradientPrecision(string text) =>
        WirePrecisionNames.Parse(text) ?? throw new ArgumentException($"--gradient-precision {text} is not {WirePrecisionNames.Choices}");

    static RingTopology Topology(string text) => text switch
    {
        "auto" => RingTopology.Auto,
        "flat" => RingTopology.Flat,
        _ => throw new ArgumentException($"--ring-topology {text} is not auto or flat"),
    };

    static long BucketFloats(double megabytes) =>
        megabytes > 0 ? Math.Max(1, (long)(megabytes * 1e6 / sizeof(float))) : throw new ArgumentException($"--bucket-mb {megabytes} must be positive");
}
