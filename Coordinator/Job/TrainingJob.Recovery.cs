using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Coordinator.Job;

/// <summary>How the job loses workers and recovers: every survivor stops, the job continues from the furthest whole step on a new ring.</summary>
public sealed partial class TrainingJob
{
    /// <summary>A worker's ring failed, so a peer may be gone: the recovery finds out who, unless one runs already or no ring does.</summary>
    void RingFailed(string what, string error, AllReduceFailure? failure)
    {
        if (phase is not (Phase.Recovering or Phase.Finishing or Phase.Stopping or Phase.WaitingForWorkers)) Recover($"{what}: {membership.NameEndpoints(error)}", failure);
    }

    /// <summary>A worker that cannot or must not go on (it failed, diverged, broke the protocol) leaves the job; the others continue.</summary>
    void Exclude(string workerId, string why)
    {
        if (!Knows(workerId)) return;
        host.Send(workerId, new Excluded(why));
        Lose(workerId, why, gone: false);
    }

    void Lose(string workerId, string why, bool gone)
    {
        if (phase == Phase.Ended || !Knows(workerId)) return;
        membership.Remove(workerId);
        replies.Forget(workerId);
        recovery.Forget(workerId);
        if (gone) host.Down(workerId);
        observer.Worker(new WorkerReport(workerId, gone ? WorkerState.Lost : WorkerState.Excluded, "", 0, "", why));
        observer.Event(new WorkerRemoved(workerId, gone, why));
        if (phase is Phase.WaitingForWorkers or Phase.Finishing or Phase.Stopping) return; // nothing runs yet, or the final state is already here
        if (membership.Count == 0)
        {
            Fail($"every worker is lost (the last: {workerId} {why}); resume with --resume {run.OutputFolder} once workers are back");
            return;
        }
        Recover($"the loss of {workerId}");
    }

    /// <summary>
    /// Something broke the ring: every member stops what it runs and says at which whole step it stands; members that
    /// cannot answer are found gone by a probe of their endpoint or by the failure detector, and left out.
    /// </summary>
    void Recover(string cause, AllReduceFailure? failure = null)
    {
        if (phase != Phase.Recovering)
        {
            interrupted = phase;
            phase = Phase.Recovering;
            attempt++;
            recovery.Begin();
            ring = (RingChange.Recovery, $"recovered from {cause}");
            observer.Event(new RecoveryStarted(cause, membership.Ids.ToArray(), failure));
            replies.Clear();
            foreach (var m in membership.Members) Ask(m.Id, new AbortSteps(membership.Generation));
            Probe(TimeSpan.Zero);
        }
        if (replies.Pending.Count == 0) Replan();
    }

    /// <summary>Asks, after <paramref name="after"/>, whether the members that owe an answer are gone (their data plane refuses connections).</summary>
    void Probe(TimeSpan after)
    {
        var waiting = membership.Members.Where(m => replies.Pending.Contains(m.Id)).ToArray();
        Background("probing the workers", async () =>
        {
            await Task.Delay(after);
            var gone = await Task.WhenAll(waiting.Select(async m => (m.Id, Gone: await states.GoneAsync(m.Endpoint))));
            return new WorkersGone(gone.Where(g => g.Gone).Select(g => g.Id).ToArray());
        });
    }

    /// <summary>A probe's answer: the gone are lost; the rest are probed again until they are late for good.</summary>
    void Probed(IReadOnlyList<string> gone)
    {
        foreach (var id in gone) Lose(id, "its data plane refuses connections: the process is gone", gone: true);
        if (phase != Phase.Recovering) return;
        if (!ReplyRound.Late(recovery.Clock.Elapsed)) Probe(ReplyRound.ProbeInterval);
        else
            foreach (var id in replies.Pending.ToArray())
                Lose(id, $"did not stop its steps within {ReplyRound.AnswerTimeout.TotalSeconds:0} s", gone: true);
    }

    /// <summary>
    /// Every survivor stands idle at a whole step: the others copy the furthest one's state, the in-flight step is redone
    /// under the same micro-batch plan, and what the loss interrupted is done again.
    /// </summary>
    void Replan()
    {
        var continueFrom = recovery.Plan(membership.Members);
        long furthest = continueFrom.Step;
        if (recovery.Fruitless >= RecoveryRound.MaxFruitless)
        {
            Fail($"the ring failed {recovery.Fruitless + 1} times in a row without a step done (at step {furthest}; the last: {ring.Why}). " +
                 "No recovery removes the cause: look for workers of another job under the same names, or a network that drops the ring's " +
                 $"connections, then resume with --resume {run.OutputFolder}");
            return;
        }
        // Steps some survivor completed count with the reports there are; reports of steps to be redone are dropped.
        foreach (var reports in ledger.Settle(furthest)) StepCompleted(reports);
        // What follows the new ring: the start (Formed starts a job that had not, or loads its state again), the interrupted
        // segment from where it stands, or the interrupted boundary again; a ring that was being formed already has its plan queued.
        if (interrupted == Phase.Running && furthest > runFrom) PlanBoundaries(furthest);
        else if (interrupted == Phase.Running) boundaries.Insert(0, JobBoundary.Run);
        else if (start == Start.Training && interrupted != Phase.Joining) boundaries.Insert(0, current);
        step = furthest;
        membership.Admit();
        observer.Event(new RecoveryPlanned(recovery.Clock.Elapsed.TotalSeconds, membership.Ids.ToArray(), furthest,
            interrupted == Phase.Running && furthest < runTo, continueFrom.Source.Id, continueFrom.Behind));
        FormRing(new StateSource(continueFrom.Source.Endpoint, furthest));
    }
}
