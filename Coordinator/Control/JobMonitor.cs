using System.Diagnostics;
using System.Threading.Channels;
using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Control;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Coordinator.Control;

/// <summary>
/// What the control plane knows of the current job: the status, the workers, the curves, the events and the masks,
/// kept from the job's observer calls (any thread). Every change is also an update with a sequence number, which
/// the control API's Watch and the dashboard's stream deliver in order to each subscriber.
/// </summary>
public sealed class JobMonitor : ITrainingObserver
{
    /// <summary>Updates kept for subscribers that start from the beginning (about two per step); older ones are dropped.</summary>
    const int HistoryLimit = 100_000;
    const int SnapshotSteps = 2_000, EtaWindow = 50;
    /// <summary>Events kept for the snapshot, the newest: a job of a thousand workers logs a thousand arrivals, a long one its every checkpoint.</summary>
    const int EventsKept = 1_000;

    /// <summary>
    /// How often a training worker's step figures are published at most: every worker reports every step, so a
    /// thousand workers at ten steps a second would put ten thousand updates a second in every watcher's stream. A
    /// change of state is published at once; the status and snapshot always hold the newest figures.
    /// </summary>
    public static readonly TimeSpan WorkerRefresh = TimeSpan.FromSeconds(1);

    readonly object gate = new();
    readonly List<JobUpdate> history = [];
    // A uniform sample of the curve, so that a long job's memory does not grow with its steps; the snapshot thins it further.
    readonly StrideSample<StepPoint> steps = new(2 * SnapshotSteps);
    readonly List<EpochPoint> epochs = [];
    readonly Queue<JobEvent> events = new();
    readonly Dictionary<string, WorkerStatus> workers = [];
    readonly Dictionary<string, TimeSpan> workerPublished = [];
    readonly Queue<(long Step, double Seconds)> recentSteps = new();
    readonly List<Channel<JobUpdate>> subscribers = [];
    readonly Stopwatch clock = new();
    JobStatus status = new() { State = "idle" };
    LayerList layers = new();
    IReadOnlyList<LayerMask> masks = [];
    long sequence;
    bool closed;

    /// <summary>A new job was accepted: everything of the previous one is forgotten.</summary>
    public void JobAccepted(string description, string outputFolder)
    {
        lock (gate)
        {
            history.Clear();
            steps.Clear();
            epochs.Clear();
            events.Clear();
            workers.Clear();
            workerPublished.Clear();
            recentSteps.Clear();
            masks = [];
            layers = new LayerList();
            clock.Restart();
            status = new JobStatus { State = "waiting", Description = description, OutputFolder = outputFolder };
            PublishStatus();
        }
    }

    /// <summary>The job ended: completed, stopped (gracefully or at once: the reason says which) or failed.</summary>
    public void JobEnded(JobEnd end, string reason)
    {
        lock (gate)
        {
            status.State = end switch { JobEnd.Completed => "completed", JobEnd.Stopped or JobEnd.Aborted => "stopped", _ => "failed" };
            status.Reason = reason;
            status.EtaSeconds = 0;
            status.ElapsedSeconds = clock.Elapsed.TotalSeconds;
            clock.Stop();
            PublishStatus(); // the job has reported its workers finished already
        }
    }

    public void Started(RunStarted run)
    {
        lock (gate)
        {
            status.State = "running";
            status.Description = run.Description;
            status.OutputFolder = run.OutputFolder;
            status.Step = run.FirstStep;
            status.TotalSteps = run.TotalSteps;
            status.Epochs = run.Epochs;
            status.BatchSize = run.BatchSize;
            PublishStatus();
        }
    }

    public void Step(StepMetrics step)
    {
        lock (gate)
        {
            var point = new StepPoint
            {
                Step = step.Step, Epoch = step.Epoch, Loss = step.Loss, Accuracy = step.Accuracy, LearningRate = step.LearningRate,
                ImagesPerSecond = step.ImagesPerSecond, StepMs = step.StepMs,
            };
            steps.Add(point);
            Publish(new JobUpdate { Step = point });
            status.State = "running";
            status.Step = step.Step + 1;
            status.Epoch = step.Epoch;
            status.Loss = step.Loss;
            status.Accuracy = step.Accuracy;
            status.LearningRate = step.LearningRate;
            status.Stage = step.Stage;
            status.FinalStage = step.FinalStage;
            status.ImagesPerSecond = step.ImagesPerSecond;
            status.ElapsedSeconds = clock.Elapsed.TotalSeconds;
            status.EtaSeconds = Eta(status.Step, status.ElapsedSeconds);
            PublishStatus();
        }
    }

    /// <summary>Seconds left at the pace of the last few steps (recoveries and boundaries included, as they recur).</summary>
    double Eta(long done, double now)
    {
        recentSteps.Enqueue((done, now));
        while (recentSteps.Count > EtaWindow) recentSteps.Dequeue();
        var (firstStep, firstTime) = recentSteps.Peek();
        if (done <= firstStep) return 0;
        return (status.TotalSteps - done) * (now - firstTime) / (done - firstStep);
    }

    public void Epoch(EpochMetrics epoch)
    {
        lock (gate)
        {
            var point = new EpochPoint
            {
                Epoch = epoch.Epoch, TrainLoss = epoch.TrainLoss, TrainAccuracy = epoch.TrainAccuracy,
                TestTop1 = epoch.Test.Top1, TestTop5 = epoch.Test.Top5, TestLoss = epoch.Test.Loss,
            };
            epochs.Add(point);
            Publish(new JobUpdate { Epoch = point });
            status.TestTop1 = epoch.Test.Top1;
            PublishStatus();
        }
    }

    public void Event(TrainingEvent e)
    {
        lock (gate)
        {
            var kind = e.Kind;
            var item = new JobEvent
            {
                TimeUnixMs = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), Kind = kind.ToString().ToLowerInvariant(), Message = e.Text(), Type = e.GetType().Name,
            };
            events.Enqueue(item);
            if (events.Count > EventsKept) events.Dequeue();
            Publish(new JobUpdate { Event = item });
            if (kind == EventKind.Recovery && status.State == "running")
            {
                status.State = "recovering";
                PublishStatus();
            }
        }
    }

    public void Finished(TrainingSummary summary)
    {
        lock (gate)
        {
            status.Sparsity = summary.Sparsity;
            if (summary.Masked is { } masked) status.TestTop1 = masked.Top1;
            PublishStatus();
        }
    }

    public void Masks(long version, long step, IReadOnlyList<LayerMask> current)
    {
        lock (gate)
        {
            masks = current;
            layers = new LayerList { MaskVersion = version };
            layers.Layers.Add(current.Select((m, i) => new LayerStatus
            {
                Layer = i, Stage = m.Stage, Groups = m.Kept.GetLength(0), InChannels = m.Kept.GetLength(1),
                Sparsity = ModelCondensing.Sparsity([m]),
            }));
            Publish(new JobUpdate { Layers = layers });
            status.MaskVersion = version;
            status.Stage = current.Count == 0 ? 0 : current.Max(m => m.Stage);
            status.Sparsity = ModelCondensing.Sparsity(current);
            PublishStatus();
        }
    }

    public void Worker(WorkerReport report)
    {
        lock (gate)
        {
            // A new message per change: the one published before stays as it was for subscribers still reading it.
            var before = workers.GetValueOrDefault(report.Worker);
            var w = before?.Clone() ?? new WorkerStatus { Id = report.Worker };
            w.State = report.State.ToString().ToLowerInvariant();
            if (report.Device != "") (w.Device, w.Threads, w.Endpoint) = (report.Device, report.Threads, report.Endpoint);
            w.Detail = report.Detail;
            if (report.Step >= 0)
            {
                w.Step = report.Step;
                (w.ComputeMs, w.AllReduceMs, w.DataWaitMs) = (report.ComputeMs, report.AllReduceMs, report.DataWaitMs);
                w.StepMs = report.ComputeMs + report.AllReduceMs + report.DataWaitMs;
                w.ImagesPerSecond = report.Samples / Math.Max(1e-9, w.StepMs / 1000);
                w.AllReduceBytes = report.AllReduceBytes;
            }
            workers[w.Id] = w;
            var now = clock.Elapsed;
            bool changed = before is null || before.State != w.State || before.Detail != w.Detail || before.Endpoint != w.Endpoint;
            if (changed || !workerPublished.TryGetValue(w.Id, out var published) || now - published >= WorkerRefresh)
            {
                workerPublished[w.Id] = now;
                Publish(new JobUpdate { Worker = w });
            }
            // Counted by the change, not by a scan of every worker on each report.
            int alive = status.WorkersAlive - (Alive(before) ? 1 : 0) + (Alive(w) ? 1 : 0);
            if (alive != status.WorkersAlive)
            {
                status.WorkersAlive = alive;
                PublishStatus();
            }
        }
    }

    static bool Alive(WorkerStatus? worker) => worker?.State is "registered" or "training";

    /// <summary>The sequence number of the newest update.</summary>
    public long Sequence
    {
        get { lock (gate) return sequence; }
    }

    public JobStatus Status()
    {
        lock (gate)
        {
            var now = status.Clone();
            if (clock.IsRunning) now.ElapsedSeconds = clock.Elapsed.TotalSeconds;
            return now;
        }
    }

    public IReadOnlyList<WorkerStatus> Workers()
    {
        lock (gate) return workers.Values.OrderBy(w => w.Id, StringComparer.Ordinal).ToArray();
    }

    /// <summary>The mask of one learned layer, or null when there is no such layer.</summary>
    public LayerMaskRows? Mask(int layer)
    {
        lock (gate)
        {
            if (layer < 0 || layer >= masks.Count) return null;
            var kept = masks[layer].Kept;
            var mask = new LayerMaskRows { Layer = layer, Groups = kept.GetLength(0), InChannels = kept.GetLength(1), MaskVersion = layers.MaskVersion };
            for (int g = 0; g < kept.GetLength(0); g++)
                mask.Rows.Add(string.Create(kept.GetLength(1), (kept, g), (row, m) =>
                {
                    for (int i = 0; i < row.Length; i++) row[i] = m.kept[m.g, i] ? '1' : '0';
                }));
            return mask;
        }
    }

    /// <summary>Everything at once, the step curve thinned to at most <see cref="SnapshotSteps"/> points (the newest always kept).</summary>
    public JobSnapshot Snapshot()
    {
        lock (gate)
        {
            var snapshot = new JobSnapshot { Sequence = sequence, Status = Status(), Layers = layers };
            snapshot.Workers.Add(Workers());
            var curve = steps.ItemsWithNewest;
            int stride = Math.Max(1, (curve.Count + SnapshotSteps - 1) / SnapshotSteps);
            snapshot.Steps.Add(curve.Where((_, i) => i % stride == 0 || i == curve.Count - 1));
            snapshot.Epochs.Add(epochs);
            snapshot.Events.Add(events);
            return snapshot;
        }
    }

    /// <summary>
    /// The updates after <paramref name="after"/> that are still kept, then every new one as it happens, until the
    /// caller stops listening. A subscriber that cannot keep up is not waited for: its own queue grows.
    /// </summary>
    public async IAsyncEnumerable<JobUpdate> Watch(long after, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancel)
    {
        var channel = Channel.CreateUnbounded<JobUpdate>(new UnboundedChannelOptions { SingleReader = true });
        lock (gate)
        {
            foreach (var update in history.Where(u => u.Sequence > after)) channel.Writer.TryWrite(update);
            if (closed) channel.Writer.TryComplete();
            else subscribers.Add(channel);
        }
        try
        {
            await foreach (var update in channel.Reader.ReadAllAsync(cancel)) yield return update;
        }
        finally
        {
            lock (gate) subscribers.Remove(channel);
        }
    }

    /// <summary>Ends every subscriber's stream (the control plane shuts down); later subscribers get the history only.</summary>
    public void Close()
    {
        lock (gate)
        {
            closed = true;
            foreach (var subscriber in subscribers) subscriber.Writer.TryComplete();
        }
    }

    void PublishStatus() => Publish(new JobUpdate { Status = status.Clone() });

    void Publish(JobUpdate update)
    {
        update.Sequence = ++sequence;
        history.Add(update);
        if (history.Count > HistoryLimit + HistoryLimit / 10) history.RemoveRange(0, HistoryLimit / 10); // in chunks: one shift per many updates
        foreach (var subscriber in subscribers) subscriber.Writer.TryWrite(update);
    }
}
