using System.CommandLine;
using System.Net;
using Akka.Actor;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Runtime;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using TorchSharp;

namespace CondenseCluster.Worker;

/// <summary>The worker's main command: join the cluster through a seed (the coordinator) and serve jobs until one ends.</summary>
static class WorkerCommand
{
    public static void Configure(RootCommand root)
    {
        var seeds = new Option<string[]>("--seed") { Description = "coordinator address: host:port or akka.tcp://condense@host:port (repeatable)", Required = true, AllowMultipleArgumentsPerToken = true };
        var host = new Option<string>("--host") { Description = "address other nodes reach this worker at (Akka and data plane)", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "Akka port (0: a free one)" };
        var dataPort = new Option<int>("--data-port") { Description = "data-plane gRPC port: ring set-up, replica state (0: a free one)" };
        var ringPort = new Option<int>("--ring-port") { Description = "ring listener's TCP port, where the left neighbour sends gradients (0: a free one)" };
        var ringTransport = new Option<string>("--ring-transport")
        {
            Description = "auto: shared memory (and a Unix socket for the frame headers) to ring neighbours on this host, TCP to others; "
                + "unix: Unix sockets to neighbours on this host; tcp: TCP to every neighbour",
            DefaultValueFactory = _ => "auto",
        };
        ringTransport.AcceptOnlyFromAmong("auto", "unix", "tcp");
        var name = new Option<string?>("--name") { Description = "worker name in logs and the summary (default: host-pid)" };
        var config = new Option<string?>("--config") { Description = "HOCON file overriding the cluster defaults" };
        var device = new Option<string>("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads (0: libtorch default)", DefaultValueFactory = _ => 1 };
        var loaderThreads = new Option<int>("--loader-threads") { Description = "threads that decode and augment images", DefaultValueFactory = _ => 1 };
        var evalBatch = new Option<int>("--eval-batch-size") { Description = "images per evaluation batch", DefaultValueFactory = _ => 64 };
        var data = new Option<string?>("--data") { Description = "where the job's dataset lies on this machine (default: the job's --data)" };
        var wait = new Option<double>("--coordinator-timeout") { Description = "seconds to wait for a lost coordinator to come back, keeping the replica", DefaultValueFactory = _ => 600 };
        var onSigterm = new Option<string>("--on-sigterm")
        {
            Description = "on SIGTERM or SIGINT (a pod preempted or evicted): checkpoint: ask the coordinator to checkpoint the job at the next step boundary and stop it, then exit; " +
                "leave: exit at once, and the job goes on without this worker. Either way a second signal exits at once",
            DefaultValueFactory = _ => "checkpoint",
        };
        onSigterm.AcceptOnlyFromAmong("checkpoint", "leave");
        var exitWithParent = new Option<bool>("--exit-with-parent")
        {
            Description = "exit at once when standard input closes: the process that started this worker and holds its input (the embedded " +
                "cluster's coordinator) is gone, even if killed with SIGKILL, so no worker is left behind to join another job",
        };
        var fault = new Option<string?>("--fault") { Description = "fault injection for tests: kill|stop@compute|allreduce|masks|checkpoint:N", Hidden = true };
        foreach (var option in new Option[] { seeds, host, port, dataPort, ringPort, ringTransport, name, config, device, threads, loaderThreads, evalBatch, data, wait, onSigterm, exitWithParent, fault })
            root.Options.Add(option);

        root.SetAction(result =>
        {
            TorchRuntime.SetThreads(result.GetValue(threads));
            string address = result.GetValue(host)!;
            string id = result.GetValue(name) ?? $"{Environment.MachineName}-{Environment.ProcessId}";
            var settings = new ReplicaSettings(id, TorchRuntime.ParseDevice(result.GetValue(device)!), Math.Max(1, result.GetValue(loaderThreads)),
                Math.Max(1, result.GetValue(evalBatch)), result.GetValue(data), FaultInjection.Parse(id, result.GetValue(fault)));
            var endpoint = new ClusterEndpoint(address, result.GetValue(port), result.GetValue(seeds), result.GetValue(config));
            double coordinatorTimeout = result.GetValue(wait);
            if (coordinatorTimeout <= 0) throw new ArgumentException($"--coordinator-timeout {coordinatorTimeout} must be positive");
            var dataPlane = new DataPlaneOptions
            {
                // A name is advertised to peers; the data plane then listens on every interface.
                ListenAddress = IPAddress.TryParse(address, out _) ? address : "0.0.0.0",
                Port = result.GetValue(dataPort),
                RingPort = result.GetValue(ringPort),
                Transport = Enum.Parse<RingTransportKind>(result.GetValue(ringTransport)!, ignoreCase: true),
            };
            bool checkpointOnSigterm = result.GetValue(onSigterm) == "checkpoint";
            return RunAsync(settings, endpoint, dataPlane, TimeSpan.FromSeconds(coordinatorTimeout), checkpointOnSigterm, result.GetValue(exitWithParent))
                .GetAwaiter().GetResult();
        });
    }

    /// <summary>
    /// Serves jobs until one ends. When the coordinator is lost, the replica stays (a restarted coordinator continues from
    /// it): the worker stops its steps, leaves the old cluster and joins the coordinator's address anew, for up to
    /// <paramref name="coordinatorTimeout"/>. A stop signal goes to the worker's actor (see <see cref="WorkerActor"/>).
    /// </summary>
    static async Task<int> RunAsync(ReplicaSettings settings, ClusterEndpoint endpoint, DataPlaneOptions dataPlaneOptions, TimeSpan coordinatorTimeout,
        bool checkpointOnSigterm, bool exitWithParent)
    {
        string host = endpoint.Host!;
        var dataPlane = new DataPlaneNode(dataPlaneOptions);
        var replica = new Replica(settings, dataPlane);
        await using var disposeReplica = replica;
        string bound = await dataPlane.StartAsync(
            services => services.AddSingleton(replica),
            endpoints => endpoints.MapGrpcService<ReplicaStateService>());
        string dataEndpoint = $"http://{host}:{new Uri(bound).Port}";

        string id = settings.WorkerId;
        Func<RegisterWorker> registration = () =>
            new(id, dataEndpoint, settings.Device.ToString(), torch.get_num_threads(), replica.Held, replica.Generation);
        string seeds = string.Join(", ", endpoint.Seeds!.Select(ClusterNode.SeedAddress));
        Console.WriteLine($"[{id}] worker on {settings.Device} ({torch.get_num_threads()} threads), data plane {dataEndpoint}, ring port {dataPlane.RingPort}, joining {seeds}");
        IActorRef? worker = null;
        StopSignal? signalled = null;
        void Stop(StopSignal stop)
        {
            Volatile.Write(ref signalled, stop);
            Volatile.Read(ref worker)?.Tell(stop);
        }
        using var signals = new StopSignals((signal, repeated) => Stop(new StopSignal(signal, repeated)));
        if (exitWithParent) WhenInputCloses(() => Stop(new StopSignal("the process that started this worker is gone", Repeated: true)));
        while (true)
        {
            if (Volatile.Read(ref signalled) is not null) return 0; // told to stop while no node stood: nothing to hand over
            var system = ClusterNode.Start("worker", endpoint);
            var exit = new TaskCompletionSource<WorkerExit>(TaskCreationOptions.RunContinuationsAsynchronously);
            var actor = system.ActorOf(Props.Create(() => new WorkerActor(registration, id, replica, coordinatorTimeout, checkpointOnSigterm, exit)), "worker");
            Volatile.Write(ref worker, actor);
            // A signal while the node started went to no actor: this one leaves at once.
            if (Volatile.Read(ref signalled) is { } early) actor.Tell(early with { Repeated = true });
            // Downed by the split-brain resolver: the coordinator was cut off from this worker.
            _ = system.WhenTerminated.ContinueWith(_ => exit.TrySetResult(WorkerExit.CoordinatorLost), TaskScheduler.Default);
            var ended = await exit.Task;
            ClusterNode.Leave(system);
            if (ended.ExitCode is int code) return code;
            replica.Abort(replica.Generation);
            await replica.Run(() => 0); // the aborted command has ended: the replica stands at a whole step
            Console.WriteLine($"[{id}] lost the coordinator; keeping the replica ({replica.Step} steps) and joining {seeds} again " +
                $"for up to {coordinatorTimeout.TotalSeconds:0} s");
        }
    }

    /// <summary>Calls <paramref name="closed"/> once standard input reaches its end (its writer exited), on a thread of its own.</summary>
    static void WhenInputCloses(Action closed) => new Thread(() =>
    {
        using var input = Console.OpenStandardInput();
        var buffer = new byte[256];
        while (input.Read(buffer) > 0) { }
        closed();
    }) { IsBackground = true, Name = "parent watch" }.Start();
}
