using CondenseCluster.Shared.Comm;

namespace CondenseCluster.Shared.Training;

/// <summary>
/// A notable event of a run, as a record: the console, the dashboard, the Watch stream and TensorBoard's Text tab render
/// it (<see cref="Text"/>), metrics.jsonl keeps its values, and tests assert on them. The cluster job's own events are in JobEvents.cs.
/// </summary>
public abstract record TrainingEvent
{
    public abstract EventKind Kind { get; }

    /// <summary>The event as one line for people.</summary>
    public abstract string Text();
}

/// <summary>What has no record of its own: a data-set fallback, an address to open.</summary>
public sealed record Notice(string Message, EventKind Category = EventKind.Info) : TrainingEvent
{
    public override EventKind Kind => Category;
    public override string Text() => Message;
}

/// <summary>The run continues from the checkpoint at <paramref name="Path"/>, with that checkpoint's job configuration.</summary>
public sealed record ResumedFromCheckpoint(string Path, long Step) : TrainingEvent
{
    public override EventKind Kind => EventKind.Checkpoint;
    public override string Text() => $"resuming from {Path} at step {Step} (its job configuration is used)";
}

/// <summary>The linear scaling rule set the peak learning rate: <paramref name="Base"/>·<paramref name="BatchSize"/>/256.</summary>
public sealed record LearningRateScaled(double Base, int BatchSize, double Peak) : TrainingEvent
{
    public override EventKind Kind => EventKind.Info;
    public override string Text() => $"--scale-lr: the learning rate peaks at {Base:G4} × {BatchSize}/256 = {Peak:G4}";
}

/// <summary>The run starts from the weights and masks of <paramref name="Path"/>; <paramref name="NewClassifier"/>: its classifier had another class count.</summary>
public sealed record InitializedFrom(string Path, bool NewClassifier) : TrainingEvent
{
    public override EventKind Kind => EventKind.Checkpoint;
    public override string Text() => $"starting from the weights and masks of {Path}" + (NewClassifier ? ", with a new classifier for this dataset's classes" : "");
}

/// <summary>A checkpoint that does not verify was passed over (<paramref name="Problem"/> says why) for an older one.</summary>
public sealed record CheckpointSkipped(string Path, string Problem) : TrainingEvent
{
    public override EventKind Kind => EventKind.Checkpoint;
    public override string Text() => $"skipping damaged checkpoint: {Problem}";
}

/// <summary>A checkpoint of the state after <paramref name="Step"/> steps is on disk.</summary>
public sealed record CheckpointWritten(string Path, long Step) : TrainingEvent
{
    public override EventKind Kind => EventKind.Checkpoint;
    public override string Text() => $"checkpoint {Path}";
}

/// <summary>A single node condensed before <paramref name="Step"/>: its learned layers reached <paramref name="Stage"/>.</summary>
public sealed record CondensingStage(long Step, int Stage, int FinalStage, double Progress) : TrainingEvent
{
    public override EventKind Kind => EventKind.Condensing;
    public override string Text() => $"condensing: stage {Stage} of {FinalStage} at step {Step} (progress {Progress:F4})";
}

/// <summary>The model converted to its condensed form, with the official pruned classifier.</summary>
public sealed record ModelConverted(Accuracy Converted, Accuracy Masked) : TrainingEvent
{
    public override EventKind Kind => EventKind.Evaluation;
    public override string Text() => $"converted: test top-1 {Converted.Top1:P2} with the official pruned classifier (masked model {Masked.Top1:P2})";
}

/// <summary>The converted model's classifier was trained again for <paramref name="Steps"/> steps on <paramref name="Samples"/> training samples.</summary>
public sealed record ClassifierRecovered(int Steps, int Samples, Accuracy Recovered) : TrainingEvent
{
    public override EventKind Kind => EventKind.Evaluation;
    public override string Text() => $"classifier recovery ({Steps} steps on {Samples} training samples): test top-1 {Recovered.Top1:P2}";
}

/// <summary>The weight average (--ema) was evaluated, masked and converted.</summary>
public sealed record AverageEvaluated(AverageAccuracy Average) : TrainingEvent
{
    public override EventKind Kind => EventKind.Evaluation;
    public override string Text() => $"weight average (--ema {Average.Decay:G}): test top-1 {Average.Masked.Top1:P2} masked, {Average.Converted.Top1:P2} converted";
}

/// <summary>The converted model of a checkpoint was exported (the control API's Export).</summary>
public sealed record ModelExported(long Step, string Path) : TrainingEvent
{
    public override EventKind Kind => EventKind.Checkpoint;
    public override string Text() => $"exported the converted model of step {Step} to {Path}";
}

/// <summary>Gradients cross the ring in <paramref name="Precision"/> (said when it is not float32).</summary>
public sealed record GradientPrecisionChosen(WirePrecision Precision) : TrainingEvent
{
    public override EventKind Kind => EventKind.Worker;
    public override string Text() => Precision == WirePrecision.Float16
        ? "gradients cross the ring as half floats (--gradient-precision fp16): half the bytes, summed to about 3 significant digits"
        : $"gradients cross the ring as {Precision}";
}
