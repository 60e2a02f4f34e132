using Akka.Actor;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Data;
using CondenseCluster.Shared.Storage;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Coordinator.Cluster;

/// <summary>
/// A training job on a cluster: this process becomes the coordinator node (its own seed), starts the local worker
/// processes if any, and runs the job until it completes or fails. Returns the exit code.
/// </summary>
static class ClusterTraining
{
    public static int Run(TrainingOptions requested, RunSettings run, ClusterSettings cluster, ITrainingObserver observer)
    {
        var resume = CheckpointStore.Resolve(run.ResumeFrom, warning => observer.Event(warning, EventKind.Checkpoint));
        var options = resume?.Header.Options ?? requested;
        options.Validate();
        var data = Datasets.Open(options.Dataset, options.DataDir, message => observer.Event(message));
        Datasets.CheckFits(data.Train, options.Model);
        if (resume is not null) observer.Event($"resuming from {resume.Path} at step {resume.Header.Step} (its job configuration is used)");

        using var states = new ReplicaStateClient();
        var system = ClusterNode.Start("coordinator", cluster.Endpoint);
        try
        {
            var node = Akka.Cluster.Cluster.Get(system);
            if (cluster.Endpoint.Seeds is not { Count: > 0 }) node.Join(node.SelfAddress); // the first node: its own seed
            var exit = new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
            // Built inside the actor, so the job only ever runs on the actor's thread.
            Func<IJobHost, TrainingJob> createJob = host =>
                new(options, run, data, resume, cluster, observer, host, states);
            var coordinator = system.ActorOf(Props.Create(() => new CoordinatorActor(createJob, exit)), ClusterNode.CoordinatorName);

            string address = node.SelfAddress.ToString();
            string hostPort = $"{node.SelfAddress.Host}:{node.SelfAddress.Port}";
            observer.Event($"coordinator at {address}; waiting for {cluster.ExpectedWorkers} workers" +
                (cluster.LocalWorkers < cluster.ExpectedWorkers ? $"; start more with: dotnet run --project Worker -- --seed {hostPort}" : ""));
            using var local = new LocalWorkers(cluster.LocalWorkers, address, cluster.WorkerDevice, cluster.WorkerThreads,
                (name, code) => coordinator.Tell(new LocalWorkerExited(name, code)));
            // Ctrl+C ends the job through the coordinator, so the workers hear of it at once and leave.
            ConsoleCancelEventHandler interrupt = (_, e) =>
            {
                e.Cancel = true;
                coordinator.Tell(new Interrupted());
            };
            Console.CancelKeyPress += interrupt;
            try { return exit.Task.GetAwaiter().GetResult(); }
            finally { Console.CancelKeyPress -= interrupt; }
        }
        finally
        {
            ClusterNode.Leave(system);
        }
    }
}
