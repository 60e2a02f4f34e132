using CondenseCluster.Shared.Model;

namespace CondenseCluster.Shared.Training;

/// <summary>What a run is about to do.</summary>
public sealed record RunStarted(
    string Description, long FirstStep, long TotalSteps, int StepsPerEpoch, int Epochs, int BatchSize, int MicroBatches,
    string Device, int Threads, string Allocator, string OutputFolder);

/// <summary>
/// One global step. Times in milliseconds: the whole step (the slowest worker's), compute = forward/backward/update,
/// data = waiting for the loader. <paramref name="UpdateSkipped"/>: its gradient was not finite, so no replica applied it.
/// </summary>
public sealed record StepMetrics(
    long Step, int Epoch, double Loss, double Accuracy, double LearningRate, int Stage, int FinalStage,
    double ImagesPerSecond, double StepMs, double ComputeMs, double DataWaitMs, bool UpdateSkipped = false);

/// <summary>Test-set accuracy of the masked model after an epoch.</summary>
public sealed record EpochMetrics(int Epoch, double TrainLoss, double TrainAccuracy, Accuracy Test, double Seconds);

/// <summary>The end of a run: accuracies before and after conversion, model sizes, time.</summary>
public sealed record TrainingSummary(
    long Steps, double Seconds, double MedianImagesPerSecond, double MedianStepMs, string Allocator,
    Accuracy? Masked, Accuracy? OfficialConverted, Accuracy? Recovered, double Sparsity,
    long ParametersBefore, long FlopsBefore, long ParametersAfter, long FlopsAfter,
    IReadOnlyList<string> Files, string? StoppedEarly, IReadOnlyList<WorkerTimings> Workers, AverageAccuracy? Average = null);

/// <summary>Test accuracy of the weight average (--ema <paramref name="Decay"/>), masked and converted with the official pruned classifier.</summary>
public sealed record AverageAccuracy(double Decay, Accuracy Masked, Accuracy Converted);

/// <summary>
/// Medians of one worker's steps in milliseconds: the whole step, and its compute, all-reduce wait and data wait; the
/// bytes it sent in its last step, and the most resident memory its process reported after a step.
/// </summary>
public sealed record WorkerTimings(string Worker, long Steps, double StepMs, double ComputeMs, double AllReduceMs, double DataWaitMs, long LastStepBytesSent = 0,
    long PeakResidentBytes = 0);

/// <summary>
/// What a notable event is about; the dashboard's event log shows it. <see cref="Recovery"/> marks the steps of a
/// recovery, <see cref="Recovered"/> the moment training resumes after one.
/// </summary>
public enum EventKind { Info, Worker, Failure, Recovery, Recovered, Condensing, Checkpoint, Evaluation }

/// <summary>Where a worker stands in the job (cluster runs).</summary>
public enum WorkerState { Registered, Training, Lost, Excluded, Finished }

/// <summary>
/// A worker's membership changed, or it reported a step (<paramref name="Step"/> is then its last one, with where the
/// time went in milliseconds and the bytes it sent through the all-reduce).
/// </summary>
public sealed record WorkerReport(
    string Worker, WorkerState State, string Device, int Threads, string Endpoint, string Detail = "",
    long Step = -1, int Samples = 0, double ComputeMs = 0, double AllReduceMs = 0, double DataWaitMs = 0, long AllReduceBytes = 0);

/// <summary>Receives progress of a training run: a console display, a metrics log, the control plane.</summary>
public interface ITrainingObserver
{
    void Started(RunStarted run);
    void Step(StepMetrics step);
    void Epoch(EpochMetrics epoch);
    /// <summary>A notable event: condensing, checkpoints, conversion, data fallbacks, workers joining and failing.</summary>
    void Event(TrainingEvent e);
    void Finished(TrainingSummary summary);
    /// <summary>The masks in force from <paramref name="step"/> on (at the start, and after each condensing).</summary>
    void Masks(long version, long step, IReadOnlyList<LayerMask> masks) { }
    /// <summary>A worker of a cluster run registered, reported a step, or left.</summary>
    void Worker(WorkerReport worker) { }
}

/// <summary>Forwards to several observers.</summary>
public sealed class Observers(params ITrainingObserver[] all) : ITrainingObserver
{
    public void Started(RunStarted run) { foreach (var o in all) o.Started(run); }
    public void Step(StepMetrics step) { foreach (var o in all) o.Step(step); }
    public void Epoch(EpochMetrics epoch) { foreach (var o in all) o.Epoch(epoch); }
    public void Event(TrainingEvent e) { foreach (var o in all) o.Event(e); }
    public void Finished(TrainingSummary summary) { foreach (var o in all) o.Finished(summary); }
    public void Masks(long version, long step, IReadOnlyList<LayerMask> masks) { foreach (var o in all) o.Masks(version, step, masks); }
    public void Worker(WorkerReport worker) { foreach (var o in all) o.Worker(worker); }
}
