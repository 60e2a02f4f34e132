using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// Writes a run's curves as a TensorBoard events file in the run's folder (<c>tensorboard --logdir &lt;folder&gt;</c>).
/// The x-axis counts steps completed, so an epoch's test accuracy lands on the same step as that epoch's last step.
/// </summary>
public sealed class TensorBoardLog : ITrainingObserver, IDisposable
{
    readonly TensorBoardEventWriter writer;
    // Observers are called from the training loop or the coordinator's actors; never concurrently for one run, but
    // from different threads, so the lock also makes the writes of one visible to the next.
    readonly Lock gate = new();
    long stepsDone;

    public TensorBoardLog(string folder) => writer = new TensorBoardEventWriter(folder);

    /// <summary>The events file being written.</summary>
    public string FilePath => writer.FilePath;

    public void Started(RunStarted run) { }

    public void Step(StepMetrics step)
    {
        lock (gate)
        {
            stepsDone = step.Step + 1;
            writer.WriteScalars(stepsDone,
            [
                ("train/loss", (float)step.Loss),
                ("train/accuracy", (float)step.Accuracy),
                ("train/learning_rate", (float)step.LearningRate),
                ("train/images_per_second", (float)step.ImagesPerSecond),
            ]);
        }
    }

    public void Epoch(EpochMetrics epoch)
    {
        lock (gate)
            writer.WriteScalars(stepsDone,
            [
                ("test/top1", (float)epoch.Test.Top1),
                ("test/top5", (float)epoch.Test.Top5),
                ("test/loss", (float)epoch.Test.Loss),
                ("epoch/train_loss", (float)epoch.TrainLoss),
                ("epoch/train_accuracy", (float)epoch.TrainAccuracy),
            ]);
    }

    /// <summary>The event's line in the Text tab, under events/&lt;kind&gt;, at the steps done so far.</summary>
    public void Event(TrainingEvent e)
    {
        lock (gate) writer.WriteText(stepsDone, $"events/{e.Kind.ToString().ToLowerInvariant()}", e.Text());
    }

    public void Finished(TrainingSummary summary) { }

    /// <summary>The fraction of pruned connections over all learned group convolutions, as masks change.</summary>
    public void Masks(long version, long step, IReadOnlyList<LayerMask> masks)
    {
        if (masks.Count == 0) return;
        lock (gate) writer.WriteScalars(step, [("condensing/sparsity", (float)ModelCondensing.Sparsity(masks))]);
    }

    public void Dispose()
    {
        lock (gate) writer.Dispose();
    }
}
