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
        var node = new NodeOptions();
        var local = new Option<bool>("--local") { Description = "train in this single process, without a cluster or control plane" };
        var data = new Option<string?>("--data") { Description = "dataset folder (Fashion-MNIST: default /usr/share/datasets/fashion-mnist, else the bundled subset)" };
        var epochs = new Option<int>("--epochs") { Description = "epochs", DefaultValueFactory = _ => 1 };
        var batch = new Option<int>("--batch-size") { Description = "global batch size B", DefaultValueFactory = _ => 64 };
        var micro = new Option<int?>("--micro-batches") { Description = "M micro-batches per step, spread over the workers (default: one per worker; 1 with --local)" };
        var lr = new Option<double>("--lr") { Description = "initial learning rate (cosine schedule per iteration)", DefaultValueFactory = _ => 0.1 };
        var warmupEpochs = new Option<double>("--warmup-epochs") { Description = "epochs of linear learning-rate warmup per iteration before the cosine (0: none, official)" };
        var warmupLr = new Option<double>("--warmup-lr") { Description = "learning rate the warmup starts from" };
        var scaleLr = new Option<bool>("--scale-lr") { Description = "linear scaling rule: multiply --lr by B/256 (large batches)" };
        var labelSmoothing = new Option<double>("--label-smoothing") { Description = "label smoothing ε of the training loss (0: none, official)" };
        var ema = new Option<double>("--ema") { Description = "keep an exponential moving average of the weights with this decay (e.g. 0.9999), evaluated and exported beside them (0: none, official)" };
        var clipGradNorm = new Option<double>("--clip-grad-norm") { Description = "clip each step's gradient to this global L2 norm (0: no clipping, official)" };
        var maxSkipped = new Option<int>("--max-skipped-steps") { Description = "steps in a row whose gradient is NaN or ∞ (their update skipped) before the run stops", DefaultValueFactory = _ => 10 };
        var lasso = new Option<double>("--lasso") { Description = "group-lasso coefficient (official: 0 on CIFAR, 1e-5 on ImageNet)" };
        var dropout = new Option<double>("--dropout") { Description = "dropout rate inside the learned group convolutions" };
        var seed = new Option<int>("--seed") { Description = "seed of weights, data order, augmentation and dropout" };
        var threads = new Option<int>("--threads") { Description = "libtorch intra-op threads (0: libtorch default)" };
        var output = new Option<string?>("--out") { Description = "output folder (default runs/<time>; with --resume, the run's folder)" };
        var resume = new Option<string?>("--resume") { Description = "checkpoint file, or run/checkpoint folder, to continue exactly" };
        var checkpointEvery = new Option<int>("--checkpoint-every") { Description = "checkpoint every N steps (0: at the end of each epoch)" };
        var checkpointMinutes = new Option<double>("--checkpoint-every-minutes") { Description = "also checkpoint at the first step boundary once M minutes have passed since the last checkpoint (0: no timed checkpoints)" };
        var resumeIfPresent = new Option<string?>("--resume-if-present") { Description = "the run in this folder: resumed if one has started there (as --resume), started there if not, left alone if it has finished (for restarted pods)" };
        var recoverySteps = new Option<int>("--recovery-steps") { Description = "steps refitting the pruned classifier after conversion (0: official conversion only)", DefaultValueFactory = _ => 300 };
        var recoverySamples = new Option<int>("--recovery-samples") { Description = "training samples the classifier recovery fits on", DefaultValueFactory = _ => 10_000 };
        var initFrom = new Option<string?>("--init-from") { Description = "start from the weights and masks of a training-form model (.ccm, or .pt/.pth/.pth.tar as PyTorch or the official code saves it); a classifier of another class count starts new" };
        var stopAfter = new Option<long?>("--stop-after") { Description = "stop with a checkpoint after this global step (resume later)" };

        var command = new Command("train", $"train CondenseNet: condensing during training, conversion and export at the end. On SIGINT or SIGTERM {NodeOptions.GracefulStop}");
        foreach (var option in model.All.Concat(node.All).Concat([local, data, epochs, batch, micro, lr, warmupEpochs, warmupLr, scaleLr, labelSmoothing, ema, clipGradNorm, maxSkipped, lasso, dropout, seed, threads,
                     output, resume, resumeIfPresent, checkpointEvery, checkpointMinutes, recoverySteps, recoverySamples, stopAfter, initFrom]))
            command.Options.Add(option);

        command.SetAction(result =>
        {
            TorchRuntime.SetThreads(result.GetValue(threads));
            bool inProcess = result.GetValue(local);
            var options = new TrainingOptions
            {
                Arch = model.Describe(result),
                Model = model.Build(result, result.GetValue(data)) with { DropoutRate = result.GetValue(dropout) },
                Dataset = result.GetValue(model.Dataset)!,
                DataDir = result.GetValue(data),
                Epochs = result.GetValue(epochs),
                BatchSize = result.GetValue(batch),
                MicroBatches = result.GetValue(micro) ?? (inProcess ? 1 : node.ExpectedWorkers(result)),
                LearningRate = result.GetValue(lr),
                WarmupEpochs = result.GetValue(warmupEpochs),
                WarmupLearningRate = result.GetValue(warmupLr),
                ScaleLearningRate = result.GetValue(scaleLr),
                LabelSmoothing = result.GetValue(labelSmoothing),
                EmaDecay = result.GetValue(ema),
                ClipGradientNorm = result.GetValue(clipGradNorm),
                MaxSkippedSteps = result.GetValue(maxSkipped),
                Lasso = result.GetValue(lasso),
                Seed = result.GetValue(seed),
                CheckpointEverySteps = result.GetValue(checkpointEvery),
                CheckpointEveryMinutes = result.GetValue(checkpointMinutes),
                RecoverySteps = result.GetValue(recoverySteps),
                RecoverySamples = result.GetValue(recoverySamples),
            };
            options.Validate(); // bad values are named before a cluster starts
            var request = new JobRequest(options, result.GetValue(output), Resume: result.GetValue(resume), StopAfterStep: result.GetValue(stopAfter),
                InitFrom: result.GetValue(initFrom));
            if (result.GetValue(resumeIfPresent) is { } runFolder)
            {
                if (CoordinatorNode.ResumeIfPresent(request, runFolder) is not { } continued)
                {
                    Console.WriteLine($"the run in {runFolder} has finished (its model-trained.ccm is written): nothing to resume");
                    return 0;
                }
                request = continued;
            }
            if (inProcess) return TrainHere(request, result, node, allocator);
            return node.Run(result, allocator, async (coordinator, interrupted) =>
            {
                var ended = await coordinator.StartAsync(request);
                // A signal that came while the job was being prepared stops it now.
                using var stop = interrupted.Register(() => _ = NodeOptions.StopRunning(coordinator, "a stop signal", now: false));
                return (await ended).ExitCode;
            });
        });
        return command;
    }

    /// <summary>The job in this process (<c>--local</c>): the console, metrics.jsonl and TensorBoard events, no cluster.</summary>
    static int TrainHere(JobRequest request, ParseResult result, NodeOptions node, string allocator)
    {
        var settings = new RunSettings
        {
            Device = TorchRuntime.ParseDevice(result.GetValue(node.Device)!),
            OutputFolder = CoordinatorNode.OutputFolder(request),
            LoaderThreads = Math.Max(1, result.GetValue(node.LoaderThreads)),
            ResumeFrom = request.Resume,
            StopAfterStep = request.StopAfterStep,
            InitFrom = request.InitFrom,
            Allocator = allocator,
        };
        using var logs = new RunLogs(settings.OutputFolder);
        LocalTraining.Run(request.Options!, settings, new Observers(ConsoleProgress.OnConsole(), logs.Observer));
        return 0;
    }
}
