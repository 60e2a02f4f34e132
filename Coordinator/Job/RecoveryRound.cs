using System.Diagnostics;

namespace CondenseCluster.Coordinator.Job;

// A recovery round and the plan it ends with.

/// <summary>Where the job continues after a recovery: from <paramref name="Step"/>, the state of <paramref name="Source"/>, which <paramref name="Behind"/> copy.</summary>
sealed record RecoveryPlan(long Step, JobMember Source, IReadOnlyList<string> Behind);

/// <summary>
/// A recovery (DESIGN.md §2): every member stops what it runs and says at which whole step it stands; when all that
/// are left have said so, the job continues from the furthest step. Also times ring changes, for the events.
/// </summary>
sealed class RecoveryRound
{
    /// <summary>Recoveries in a row that continue from the same step before the job gives up: its ring keeps failing for a cause no recovery removes.</summary>
    public const int MaxFruitless = 5;

    readonly Dictionary<string, long> stoppedAt = [];
    long lastStep = -1;

    /// <summary>Time since the recovery (or the admission of new workers) began.</summary>
    public Stopwatch Clock { get; } = new();

    public void Begin()
    {
        stoppedAt.Clear();
        Clock.Restart();
    }

    /// <summary>The worker stopped at the whole step <paramref name="step"/>.</summary>
    public void Stopped(string workerId, long step) => stoppedAt[workerId] = step;

    public void Forget(string workerId) => stoppedAt.Remove(workerId);

    /// <summary>How many recoveries in a row, after a first, continued from the step the one before did: no step was done in between.</summary>
    public int Fruitless { get; private set; }

    /// <summary>
    /// Every survivor stands idle at a whole step, the furthest ones one step ahead at most (a step completes on one
    /// replica only once all have sent their gradients): continue from the furthest, the first member there the source.
    /// </summary>
    public RecoveryPlan Plan(IReadOnlyList<JobMember> members)
    {
        long furthest = members.Max(m => stoppedAt[m.Id]);
        Fruitless = furthest > lastStep ? 0 : Fruitless + 1;
        lastStep = furthest;
        var source = members.First(m => stoppedAt[m.Id] == furthest);
        return new RecoveryPlan(furthest, source, members.Where(m => stoppedAt[m.Id] < furthest).Select(m => m.Id).ToArray());
    }
}
