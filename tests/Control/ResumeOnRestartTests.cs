using CondenseCluster.Shared.Training;
using CondenseCluster.Tests.Cluster;
using Xunit;

namespace CondenseCluster.Tests.Control;

/// <summary>
/// A coordinator pod restarted by Kubernetes runs <c>serve --resume-if-present RUN</c> (the helm chart's default): it
/// continues the run it finds there at once, as a real process with two worker processes.
/// </summary>
[Collection(ClusterProcesses.Name)]
public class ResumeOnRestartTests : TempFolderTest
{
    [Fact]
    public void AServingCoordinatorContinuesTheStoppedRunInItsFolderFromTheNewestCheckpoint()
    {
        // The run as a graceful stop leaves it: checkpoints (the newest of step 4), no trained model. The job is the
        // serving tests' tiny one, trained here in one process.
        string run = Path.Combine(Folder, "run");
        var (code, output) = CoordinatorProgram.Run(["train", "--local", "--threads", "1", "--stages", "2,2", "--growth", "4,8", "--data", BundledData.FashionMnistSubset,
            "--batch-size", "48", "--micro-batches", "2", "--lr", "0.01", "--seed", "7", "--recovery-steps", "0", "--checkpoint-every", "2", "--stop-after", "4",
            "--out", run]);
        Assert.True(code == 0, output);
        foreach (var model in Directory.GetFiles(run, "model-*")) File.Delete(model);

        using var coordinator = new ServingCoordinator(["--resume-if-present", run]);
        var status = coordinator.WaitFor(s => s.State == "running" && s.Step >= 6, "the resumed job to run two steps");
        Assert.Equal(run, status.OutputFolder);
        var resumed = RunEvents.Single<ResumedFromCheckpoint>(run);
        Assert.Equal((Path.Combine(run, "checkpoints", "checkpoint-000000004.ccc"), 4L), (resumed.Path, resumed.Step));
    }
}
