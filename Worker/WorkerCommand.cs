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
        var dataPort = new Option<int>("--data-port") { Description = "data-plane (gRPC) port (0: a free one)" };
        var name = new Option<string?>("--name") { Description = "worker name in logs and the summary (default: host-pid)" };
        var config = new Option<string?>("--config") { Description = "HOCON file overriding the cluster defaults" };
        var device = new Option<string>("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads (0: libtorch default)", DefaultValueFactory = _ => 1 };
        var loaderThreads = new Option<int>("--loader-threads") { Description = "threads that decode and augment images", DefaultValueFactory = _ => 1 };
        var evalBatch = new Option<int>("--eval-batch-size") { Description = "images per evaluation batch", DefaultValueFactory = _ => 64 };
        foreach (var option in new Option[] { seeds, host, port, dataPort, name, config, device, threads, loaderThreads, evalBatch }) root.Options.Add(option);

        root.SetAction(result =>
        {
            TorchRuntime.SetThreads(result.GetValue(threads));
            string address = result.GetValue(host)!;
            var settings = new ReplicaSettings(result.GetValue(name) ?? $"{Environment.MachineName}-{Environment.ProcessId}",
                TorchRuntime.ParseDevice(result.GetValue(device)!), Math.Max(1, result.GetValue(loaderThreads)), Math.Max(1, result.GetValue(evalBatch)));
            var endpoint = new ClusterEndpoint(address, result.GetValue(port), result.GetValue(seeds), result.GetValue(config));
            return RunAsync(settings, endpoint, result.GetValue(dataPort)).GetAwaiter().GetResult();
        });
    }

    static async Task<int> RunAsync(ReplicaSettings settings, ClusterEndpoint endpoint, int dataPort)
    {
        string host = endpoint.Host!;
        // A name is advertised to peers; the data plane then listens on every interface.
        var dataPlane = new DataPlaneNode(new DataPlaneOptions { ListenAddress = IPAddress.TryParse(host, out _) ? host : "0.0.0.0", Port = dataPort });
        var replica = new Replica(settings, dataPlane);
        await using var disposeReplica = replica;
        string bound = await dataPlane.StartAsync(
            services => services.AddSingleton(replica),
            endpoints => endpoints.MapGrpcService<ReplicaStateService>());
        string dataEndpoint = $"http://{host}:{new Uri(bound).Port}";

        var system = ClusterNode.Start("worker", endpoint);
        var exit = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        var registration = new RegisterWorker(settings.WorkerId, dataEndpoint, settings.Device.ToString(), torch.get_num_threads());
        system.ActorOf(Props.Create(() => new WorkerActor(registration, replica, exit)), "worker");
        Console.WriteLine($"[{settings.WorkerId}] worker on {settings.Device} ({torch.get_num_threads()} threads), data plane {dataEndpoint}, " +
            $"joining {string.Join(", ", endpoint.Seeds!.Select(ClusterNode.SeedAddress))}");
        _ = system.WhenTerminated.ContinueWith(_ => exit.TrySetResult(1), TaskScheduler.Default); // e.g. downed by the split-brain resolver
        int code = await exit.Task;
        ClusterNode.Leave(system);
        return code;
    }
}
