using System.CommandLine;
using CondenseCluster.Coordinator.Cluster;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Runtime;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Coordinator.Cli;

/// <summary><c>train</c>: a job on an embedded local cluster (default), on external workers, or in this process (<c>--local</c>).</summary>
static class TrainCommand
{
    public static Command Create(string allocator)
    {
        var model = new ModelOptions(defaultDataset: "fashion-mnist");
        var local = new Option<bool>("--local") { Description = "train in this single process, without a cluster" };
        var localWorkers = new Option<int>("--local-workers") { Description = "worker processes to start on this machine (0: only external workers)", DefaultValueFactory = _ => 2 };
        var workers = new Option<int?>("--workers") { Description = "workers the job waits for before it starts (default: --local-workers, at least 1)" };
        var workerThreads = new Option<int>("--worker-threads") { Description = "libtorch intra-op threads of each local worker", DefaultValueFactory = _ => 1 };
        var host = new Option<string>("--host") { Description = "address workers reach the coordinator at", DefaultValueFactory = _ => "127.0.0.1" };
        var port = new Option<int>("--port") { Description = "the coordinator's Akka port, which workers name as --seed (0: a free one)", DefaultValueFactory = _ => 4053 };
        var config = new Option<string?>("--config") { Description = "HOCON file overriding the cluster defaults (ports, failure detector)" };
        var checksumEvery = new Option<int>("--checksum-every") { Description = "workers report a weight checksum every N steps", DefaultValueFactory = _ => 10 };
        var bucket = new Option<double>("--bucket-mb") { Description = "gradients cross the ring in buckets of this many MB", DefaultValueFactory = _ => 4 };
        var data = new Option<string?>("--data") { Description = "dataset folder (Fashion-MNIST: default /usr/share/datasets/fashion-mnist, else the bundled subset)" };
        var epochs = new Option<int>("--epochs") { Description = "epochs", DefaultValueFactory = _ => 1 };
        var batch = new Option<int>("--batch-size") { Description = "global batch size B", DefaultValueFactory = _ => 64 };
        var micro = new Option<int?>("--micro-batches") { Description = "M micro-batches per step, spread over the workers (default: one per worker; 1 with --local)" };
        var lr = new Option<double>("--lr") { Description = "initial learning rate (cosine schedule per iteration)", DefaultValueFactory = _ => 0.1 };
        var lasso = new Option<double>("--lasso") { Description = "group-lasso coefficient (official: 0 on CIFAR, 1e-5 on ImageNet)" };
        var dropout = new Option<double>("--dropout") { Description = "dropout rate inside the learned group convolutions" };
        var seed = new Option<int>("--seed") { Description = "seed of weights, data order, augmentation and dropout" };
        var device = new Option<string>("--device") { Description = "cpu, cuda or cuda:N", DefaultValueFactory = _ => "cpu" };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads (0: libtorch default)" };
        var loaderThreads = new Option<int>("--loader-threads") { Description = "threads that decode and augment images", DefaultValueFactory = _ => 1 };
        var output = new Option<string?>("--out") { Description = "output folder (default runs/<time>; with --resume, the run's folder)" };
        var resume = new Option<string?>("--resume") { Description = "checkpoint file, or run/checkpoint folder, to continue exactly" };
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "checkpoint every N steps (0: at the end of each epoch)" };
        var recoverySteps = new Option<int>("--recovery-steps") { Description = "steps refitting the pruned classifier after conversion (0: official conversion only)", DefaultValueFactory = _ => 300 };
        var recoverySamples = new Option<int>("--recovery-samples") { Description = "training samples the classifier recovery fits on", DefaultValueFactory = _ => 10_000 };
        var stopAfter = new Option<long?>("--stop-after") { Description = "stop with a checkpoint after this global step (resume later)" };

        var command = new Command("train", "train CondenseNet: condensing during training, conversion and export at the end");
        foreach (var option in model.All.Concat([local, localWorkers, workers, workerThreads, host, port, config, checksumEvery, bucket, data, epochs, batch, micro, lr, lasso, dropout, seed, device, threads, loaderThreads,
                     output, resume, checkpointEvery, recoverySteps, recoverySamples, stopAfter]))
            command.Options.Add(option);

        command.SetAction(result =>
        {
            TorchRuntime.SetThreads(result.GetValue(threads));
            bool inProcess = result.GetValue(local);
            int started = result.GetValue(localWorkers);
            if (started < 0) throw new ArgumentException($"--local-workers {started} must not be negative");
            int expected = result.GetValue(workers) ?? Math.Max(1, started);
            if (expected < Math.Max(1, started)) throw new ArgumentException($"--workers {expected} must be at least 1 and at least --local-workers {started}");
            var options = new TrainingOptions
            {
                Arch = model.Describe(result),
                Model = model.Build(result) with { DropoutRate = result.GetValue(dropout) },
                Dataset = result.GetValue(model.Dataset)!,
                DataDir = result.GetValue(data),
                Epochs = result.GetValue(epochs),
                BatchSize = result.GetValue(batch),
                MicroBatches = result.GetValue(micro) ?? (inProcess ? 1 : expected),
                LearningRate = result.GetValue(lr),
                Lasso = result.GetValue(lasso),
                Seed = result.GetValue(seed),
                CheckpointEverySteps = result.GetValue(checkpointEvery),
                RecoverySteps = result.GetValue(recoverySteps),
                RecoverySamples = result.GetValue(recoverySamples),
            };
            string? resumeFrom = result.GetValue(resume);
            var settings = new RunSettings
            {
                Device = TorchRuntime.ParseDevice(result.GetValue(device)!),
                OutputFolder = Path.GetFullPath(result.GetValue(output) ?? DefaultOutput(resumeFrom)),
                LoaderThreads = Math.Max(1, result.GetValue(loaderThreads)),
                ResumeFrom = resumeFrom,
                StopAfterStep = result.GetValue(stopAfter),
                Allocator = allocator,
            };
            using var log = new MetricsLog(Path.Combine(settings.OutputFolder, "metrics.jsonl"));
            var console = new ConsoleProgress(Console.Out, interactive: !Console.IsOutputRedirected, TimeSpan.FromSeconds(10));
            var observer = new Observers(console, log);
            if (inProcess)
            {
                LocalTraining.Run(options, settings, observer);
                return 0;
            }
            var cluster = new ClusterSettings(new ClusterEndpoint(result.GetValue(host), result.GetValue(port), null, result.GetValue(config)),
                started, expected, Math.Max(1, result.GetValue(workerThreads)), result.GetValue(device)!, Math.Max(1, result.GetValue(checksumEvery)),
                BucketFloats(result.GetValue(bucket)));
            return ClusterTraining.Run(options, settings, cluster, observer);
        });
        return command;
    }

    static long BucketFloats(double megabytes) =>
        megabytes > 0 ? Math.Max(1, (long)(megabytes * 1e6 / sizeof(float))) : throw new ArgumentException($"--bucket-mb {megabytes} must be positive");

    /// <summary>A resumed run writes next to its checkpoints; a new one into runs/ with a timestamp.</summary>
    static string DefaultOutput(string? resumeFrom)
    {
        if (resumeFrom is null) return Path.Combine("runs", DateTime.Now.ToString("yyyyMMdd-HHmmss"));
        string folder = File.Exists(resumeFrom) ? Path.GetDirectoryName(Path.GetFullPath(resumeFrom))! : Path.GetFullPath(resumeFrom);
        return Path.GetFileName(folder) == "checkpoints" ? Path.GetDirectoryName(folder)! : folder;
    }
}
