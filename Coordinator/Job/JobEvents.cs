using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Coordinator.Job;

// The events of the cluster job as records (the run's general ones are in Shared/Training/TrainingEvents.cs).

/// <summary>The coordinator waits for <paramref name="Workers"/> workers at <paramref name="Address"/>, some of them (<paramref name="MoreToStart"/>) to be started elsewhere.</summary>
public sealed record CoordinatorWaiting(string Address, int Workers, bool MoreToStart) : TrainingEvent
{
    /// <summary>The host:port a worker is given as --seed.</summary>
    public string Seed => Address[(Address.IndexOf('@') + 1)..];

    public override EventKind Kind => EventKind.Worker;
    public override string Text() => $"coordinator at {Address}; waiting for {Workers} workers" +
        (MoreToStart ? $"; start more with: dotnet run --project Worker -- --seed {Seed}" : "");
}

/// <summary>
/// A worker offered itself: it is member <paramref name="Registered"/> of <paramref name="Expected"/>, or (Expected null)
/// joins at the next step boundary. It may hold this job at <paramref name="HeldStep"/> (it outlived a coordinator), or
/// a replica of another run at <paramref name="OtherRunStep"/>, which it drops.
/// </summary>
public sealed record WorkerArrived(string Worker, string Device, int Threads, string Endpoint, long? HeldStep, int Registered, int? Expected, long? OtherRunStep = null) : TrainingEvent
{
    public override EventKind Kind => EventKind.Worker;
    public override string Text() =>
        $"{Worker} registered ({Device}, {Threads} threads, data plane {Endpoint}{(HeldStep is long held ? $", holding this job at step {held}" : "")}" +
        $"{(OtherRunStep is long other ? $", holding another run's replica at step {other}, which it drops for this job's" : "")})"
        + (Expected is int expected ? $"; {Registered} of {expected} workers" : "; it joins at the next step boundary");
}

/// <summary>The first ring: <paramref name="Ranks"/> lists the workers by rank.</summary>
public sealed record ClusterFormed(IReadOnlyList<string> Ranks) : TrainingEvent
{
    public override EventKind Kind => EventKind.Worker;
    public override string Text() => $"cluster formed: {string.Join(", ", Ranks.Select((w, rank) => $"{w} (rank {rank})"))}";
}

/// <summary>A worker left the job: <paramref name="Gone"/> (its process or node) or excluded (it failed, diverged, broke the protocol).</summary>
public sealed record WorkerRemoved(string Worker, bool Gone, string Reason) : TrainingEvent
{
    public override EventKind Kind => EventKind.Failure;
    public override string Text() => $"{Worker} {(Gone ? "lost" : "excluded")}: {Reason}";
}

/// <summary>A recovery began: every member stops its steps and says where it stands.</summary>
/// <param name="Failure">the all-reduce failure a worker reported, when one caused it</param>
public sealed record RecoveryStarted(string Cause, IReadOnlyList<string> Workers, AllReduceFailure? Failure = null) : TrainingEvent
{
    public override EventKind Kind => EventKind.Recovery;
    public override string Text() => $"recovering from {Cause}: stopping the steps of {string.Join(", ", Workers)}";
}

/// <summary>
/// Every survivor answered <paramref name="Seconds"/> after the recovery began: they continue from <paramref name="Step"/>,
/// <paramref name="Behind"/> copying that state from <paramref name="Source"/>.
/// </summary>
public sealed record RecoveryPlanned(double Seconds, IReadOnlyList<string> Workers, long Step, bool StepRedone, string Source, IReadOnlyList<string> Behind) : TrainingEvent
{
    public override EventKind Kind => EventKind.Recovery;
    public override string Text() =>
        $"re-planned after {Seconds:F2} s: {Workers.Count} workers continue from step {Step}, {(StepRedone ? $"step {Step} is redone" : "no step is redone")}"
        + (Behind.Count > 0 ? $"; {string.Join(", ", Behind)} copy the state of step {Step} from {Source}" : "");
}

/// <summary>Why the ring was formed anew.</summary>
public enum RingChange { Recovery, Admission }

/// <summary>A new ring stands and training continues at <paramref name="Step"/>, <paramref name="Seconds"/> after the change began.</summary>
public sealed record TrainingContinues(RingChange Change, string Why, long Step, IReadOnlyList<string> Workers, double Seconds) : TrainingEvent
{
    public override EventKind Kind => Change == RingChange.Recovery ? EventKind.Recovered : EventKind.Worker;
    public override string Text() =>
        $"{Why}: training continues at step {Step} with {Workers.Count} workers ({string.Join(", ", Workers)}), {Seconds:F2} s after it began";
}

/// <summary>A restarted coordinator continues from a step the workers hold rather than from its checkpoint.</summary>
public sealed record ContinuingFromWorkers(long Step, string Holder, long? CheckpointStep) : TrainingEvent
{
    public override EventKind Kind => EventKind.Recovered;
    public override string Text() => $"continuing from the workers' memory at step {Step} (held by {Holder})"
        + (CheckpointStep is long at ? $", not from the checkpoint of step {at}: no committed step is lost" : "");
}

/// <summary>The state the job starts from at <paramref name="Step"/> (a resumed checkpoint's, or --init-from's) is being loaded into the workers.</summary>
public sealed record StartingStateLoading(long Step, int Workers, string From) : TrainingEvent
{
    public override EventKind Kind => EventKind.Checkpoint;
    public override string Text() => $"starting at step {Step} from {From}: loading its state into {Workers} workers";
}

/// <summary>The masks of a state the workers held were read back from <paramref name="Worker"/>.</summary>
public sealed record MasksAdopted(long Step, string Worker, int Stage) : TrainingEvent
{
    public override EventKind Kind => EventKind.Condensing;
    public override string Text() => $"masks of step {Step} read from {Worker}: stage {Stage}";
}

/// <summary>Masks version <paramref name="Version"/> was decided before <paramref name="Step"/> from importance averaged over <paramref name="Workers"/> workers.</summary>
public sealed record MasksDecided(long Version, long Step, double Progress, int Moved, int Stage, int Workers, string MaskChecksum) : TrainingEvent
{
    public override EventKind Kind => EventKind.Condensing;
    public override string Text() => $"condensing before step {Step} (progress {Progress:F4}): {Moved} layers to stage {Stage}, " +
        $"mask version {Version} decided from importance averaged over {Workers} workers (mask checksum {MaskChecksum})";
}

/// <summary>Every worker installed masks version <paramref name="Version"/> and reported the same checksums: they are in force.</summary>
public sealed record MasksInForce(long Version, long Step, int Workers, string MaskChecksum, string WeightChecksum) : TrainingEvent
{
    public override EventKind Kind => EventKind.Condensing;
    public override string Text() => $"mask version {Version} applied on {Workers} workers (mask checksum {MaskChecksum}, weights {WeightChecksum})";
}

/// <summary>At the end, every replica reported the same weights.</summary>
public sealed record ReplicasAgree(int Workers, long Step, string Checksum) : TrainingEvent
{
    public override EventKind Kind => EventKind.Checkpoint;
    public override string Text() => $"all {Workers} replicas hold identical weights at step {Step} (checksum {Checksum})";
}

/// <summary>
/// A graceful stop was asked for by <paramref name="By"/> (a signal, the control API, a worker's SIGTERM) while the job
/// had completed <paramref name="Steps"/> steps: the step in flight completes, its boundary is checkpointed, then the job ends.
/// </summary>
public sealed record StopRequested(string By, long Steps) : TrainingEvent
{
    public override EventKind Kind => EventKind.Checkpoint;
    public override string Text() =>
        $"stop requested by {By} after {Steps} steps: checkpointing at the next step boundary, then stopping (again, or stop --now: at once)";
}

/// <summary>
/// The job stopped after <paramref name="Steps"/> steps; <paramref name="Resume"/> says how to go on. A graceful stop
/// says how long it took from the request until its checkpoint was on disk (<paramref name="Seconds"/>); one at once does not.
/// </summary>
public sealed record JobStopped(string By, long Steps, string Resume, double? Seconds = null) : TrainingEvent
{
    public override EventKind Kind => EventKind.Info;
    public override string Text() =>
        $"stopped by {By} after {Steps} steps{(Seconds is double s ? $", checkpointed {s:F1} s after the request" : ", at once")}; {Resume}";
}

/// <summary>
/// The checkpoint of <paramref name="Step"/> could not be written (<paramref name="Error"/>: e.g. the disk is full or
/// read-only); training goes on, and <paramref name="Newest"/> stays the one to resume from.
/// </summary>
public sealed record CheckpointWriteFailed(long Step, string Error, string? Newest) : TrainingEvent
{
    public override EventKind Kind => EventKind.Failure;
    public override string Text() => $"warning: the checkpoint of step {Step} could not be written ({Error}); training goes on and the next " +
        $"checkpoint is tried as planned; the newest on disk: {Newest ?? "none"}";
}

/// <summary>The job cannot go on.</summary>
public sealed record JobFailed(string Error) : TrainingEvent
{
    public override EventKind Kind => EventKind.Failure;
    public override string Text() => $"error: {Error}";
}

/// <summary>A message of type <paramref name="MessageType"/> that the job did not expect now (from <paramref name="Worker"/>, if a worker sent it) was dropped.</summary>
public sealed record MessageIgnored(string MessageType, string? Worker, string Why) : TrainingEvent
{
    public override EventKind Kind => EventKind.Failure;
    public override string Text() => $"ignored {MessageType}{(Worker is null ? "" : $" from {Worker}")}: {Why}";
}
