using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using TorchSharp;

namespace CondenseCluster.Coordinator.Job;

/// <summary>What the job does at a step boundary (condense, evaluate, checkpoint, finish), and the steps it runs between two.</summary>
public sealed partial class TrainingJob
{
    /// <summary>Plans what happens at step <paramref name="at"/> before the steps after it run, and goes on.</summary>
    void Boundaries(long at)
    {
        PlanBoundaries(at);
        Next();
    }

    void PlanBoundaries(long at) =>
        boundaries.AddRange(schedule.BoundariesAt(at, first, schedule.MasksBehind(condensing.Masks, at),
            checkpoints.Requested || (at > first && schedule.TimedCheckpointDue(sinceCheckpoint.Elapsed))));

    void Next()
    {
        if (stopping is not null)
        {
            StopAtBoundary();
            return;
        }
        current = boundaries[0];
        boundaries.RemoveAt(0);
        switch (current)
        {
            case JobBoundary.Run when membership.Joiners.Count > 0:
                // Admit new workers now, at a step boundary: they copy rank 0's state and the segment runs on the larger ring.
                boundaries.Insert(0, JobBoundary.Run);
                var source = membership.Members[0];
                var admitted = membership.Admit();
                recovery.Clock.Restart();
                ring = (RingChange.Admission, $"{string.Join(", ", admitted)} admitted at step {step} with the state of {source.Id}");
                FormRing(new StateSource(source.Endpoint, step));
                break;
            case JobBoundary.Run:
                phase = Phase.Running;
                segmentCut = false;
                (runFrom, runTo) = (step, schedule.NextBoundary(step));
                AskAll(new RunSteps(step, runTo));
                break;
            case JobBoundary.Condense when condensing.Decided is not null:
                // A recovery interrupted the broadcast: the decision stands, and installing it again is harmless.
                phase = Phase.Masks;
                AskAll(condensing.Broadcast(step));
                break;
            case JobBoundary.Condense:
                phase = Phase.Importance;
                AskAll(condensing.Begin());
                replies.ExpectNoOne(); // rank 0 answers with the layers; every worker's failure still arrives as WorkerFailed
                break;
            case JobBoundary.Evaluate:
                phase = Phase.Evaluating;
                shards.Clear();
                AskAll(new EvaluateShard(step));
                break;
            case JobBoundary.Checkpoint:
            case JobBoundary.Finish:
                phase = Phase.PreparingState;
                AskAll(new PrepareState(step));
                break;
        }
    }

    /// <summary>A graceful stop at this step boundary: its state is checkpointed (unless that is under way already), then the job ends.</summary>
    void StopAtBoundary()
    {
        if (checkpoints.Last is { } last && last.Step == step)
        {
            Halt(last.Writing);
            return;
        }
        current = JobBoundary.Checkpoint;
        phase = Phase.PreparingState;
        AskAll(new PrepareState(step));
    }

    /// <summary>The checkpoint a graceful stop ends with is being written: the job ends once it is on disk.</summary>
    void Halt(Task<string> writing)
    {
        phase = Phase.Stopping;
        attempt++; // work still running for the job (the end's conversion) is of no use now
        long at = step;
        Background("writing the checkpoint to stop at", async () => new StopCheckpointed(await writing, at));
    }

    void Record(StepReport report)
    {
        if (report.Step < step) return; // of a step already settled by a recovery
        var reports = ledger.Record(report, membership.Count);
        if (membership.Member(report.WorkerId) is { } member)
            observer.Worker(member.Report(WorkerState.Training) with
            {
                Step = report.Step, Samples = report.Samples, ComputeMs = report.ComputeMs, AllReduceMs = report.AllReduceMs,
                DataWaitMs = report.DataWaitMs, AllReduceBytes = report.AllReduceBytes,
            });
        if (reports is null) return;
        var withChecksums = reports.Where(r => r.WeightChecksum is not null).Select(r => (r.WorkerId, r.WeightChecksum!)).ToList();
        if (withChecksums.Count == membership.Count && !Agree("weights", report.Step + 1, withChecksums)) return;
        StepCompleted(reports);
    }

    void StepCompleted(IReadOnlyList<StepReport> reports)
    {
        double loss = reports.Sum(r => r.LossSum), correct = reports.Sum(r => r.Correct), samples = reports.Sum(r => r.Samples);
        observer.Step(metrics.Step(reports[0].Step, condensing.Masks.Max(m => m.Stage), loss, correct, samples,
            reports.Max(r => r.ComputeMs + r.AllReduceMs + r.DataWaitMs), reports.Max(r => r.ComputeMs), reports.Max(r => r.DataWaitMs),
            reports.Any(r => r.UpdateSkipped)));
        if (schedule.TimedCheckpointDue(sinceCheckpoint.Elapsed)) EndSegmentEarly();
    }

    void Importance(LayerImportance layer)
    {
        try
        {
            if (!condensing.Add(layer)) return;
        }
        catch (ArgumentException e)
        {
            Exclude(membership.Members[0].Id, $"it sent malformed importance: {e.Message}");
            return;
        }
        double progress = CondensingSchedule.Progress(step, plan.TotalSteps);
        int moved = condensing.Decide(progress);
        phase = Phase.Masks;
        AskAll(condensing.Broadcast(step));
        observer.Event(new MasksDecided(condensing.Version, step, progress, moved, condensing.Decided!.Max(m => m.Stage), membership.Count,
            condensing.DecidedChecksum));
    }

    void Applied(MasksApplied applied)
    {
        string expected = condensing.DecidedChecksum;
        if (applied.MaskChecksum != expected)
        {
            Exclude(applied.WorkerId, $"{applied.WorkerId} diverged: its masks after version {applied.MaskVersion} have checksum {applied.MaskChecksum}, " +
                $"the coordinator decided {expected}");
            return;
        }
        replies.Checksum(applied.WorkerId, applied.WeightChecksum);
        if (!Complete("weights", step)) return;
        condensing.Commit();
        observer.Event(new MasksInForce(condensing.Version, step, membership.Count, expected, applied.WeightChecksum));
        observer.Masks(condensing.Version, step, condensing.Masks);
        Next();
    }

    void Evaluated()
    {
        lastTest = Accuracy.Combine(shards);
        observer.Epoch(metrics.Epoch(step, lastTest.Value));
        Next();
    }

    void FetchState()
    {
        phase = Phase.Fetching;
        var (from, at) = (membership.Members[0], step);
        Background($"fetching the state of step {at} from {from.Id}", async () => new StateFetched(await states.FetchAsync(from.Endpoint, at)));
    }

    /// <summary>The job's state at a boundary is here: a checkpoint is written while training goes on; the end needs no worker any more.</summary>
    void Fetched(byte[] state)
    {
        long at = step;
        var writing = checkpoints.Write(at, state);
        sinceCheckpoint.Restart();
        if (current == JobBoundary.Checkpoint || stopping is not null) // a stop's checkpoint is written as any other; Next then ends the job
        {
            host.Background(async () => new CheckpointSaved(await writing, at), error => new CheckpointFailed(error, at));
            Next();
            return;
        }
        phase = Phase.Finishing;
        observer.Event(new ReplicasAgree(membership.Count, step, agreed));
        var totals = new RunTotals(step - first, clock.Elapsed.TotalSeconds, metrics.StepMs.ToArray(), ledger.WorkerTimings());
        string? stopped = schedule.LastStep < plan.TotalSteps
            ? $"stopped after step {schedule.LastStep} of {plan.TotalSteps}; resume with --resume {checkpoints.Folder}" : null;
        var test = lastTest;
        Background("finishing the job", async () =>
        {
            observer.Event(new CheckpointWritten(await writing, at));
            var (model, average) = TrainingEngine.ReadModels(options, state, run.Device);
            using (model)
            using (average)
                return new JobCompleted(TrainingCompletion.Finish(model, average, options, run, data, totals, test, stopped, observer));
        });
    }
}
