using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Comm;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;

namespace CondenseCluster.Coordinator.Job;

/// <summary>How the job forms its rings (the first, after a recovery, to admit workers) and brings the replicas to its starting state.</summary>
public sealed partial class TrainingJob
{
    /// <summary>Forms the first ring; a restarted coordinator continues from the workers' memory when they hold the job further than the checkpoint.</summary>
    void Join()
    {
        membership.Admit();
        observer.Event(new ClusterFormed(membership.Ids.ToArray()));
        if (cluster.GradientPrecision != WirePrecision.Float32) observer.Event(new GradientPrecisionChosen(cluster.GradientPrecision));
        var holder = membership.Members.Where(m => m.Held is { } held && held.JobKey == jobKey && held.Step > step)
            .OrderByDescending(m => m.Held!.Step).FirstOrDefault();
        if (holder is not null)
        {
            origin = Origin.WorkersMemory;
            step = first = holder.Held!.Step;
            observer.Event(new ContinuingFromWorkers(step, holder.Id, starting?.Step));
            starting = null;
        }
        ring = (null, "the job starts");
        FormRing(holder is null ? null : new StateSource(holder.Endpoint, step));
    }

    /// <summary>Sends every member its rank in a new ring; those not at <paramref name="from"/>'s step copy that state from the peer.</summary>
    void FormRing(StateSource? from)
    {
        phase = Phase.Joining;
        var (generation, endpoints) = membership.NewRing();
        var layouts = RingLayout.All(endpoints, cluster.Topology);
        replies.Clear();
        for (int rank = 0; rank < membership.Count; rank++)
            Ask(membership.Members[rank].Id, new JoinJob(optionsJson, jobKey, rank, endpoints.Length, layouts[rank], generation, cluster.ChecksumEvery,
                cluster.BucketFloats, cluster.SendMaskedGradients, cluster.GradientPrecision, from));
    }

    /// <summary>Every member stands in the new ring at the same step with identical weights.</summary>
    void Formed()
    {
        foreach (var m in membership.Members) observer.Worker(m.Report(WorkerState.Training));
        switch (start)
        {
            case Start.FormingRing:
                Started();
                return;
            case Start.LoadingState: // a recovery interrupted it
                Begin();
                return;
        }
        observer.Event(new TrainingContinues(ring.Change!.Value, ring.Why, step, membership.Ids.ToArray(), recovery.Clock.Elapsed.TotalSeconds));
        Next();
    }

    void Started()
    {
        clock.Start();
        sinceCheckpoint.Start();
        metrics.Start();
        var members = membership.Members;
        observer.Started(new RunStarted($"{options.Arch} on {data.Train.Description}", first, plan.TotalSteps, plan.StepsPerEpoch, options.Epochs,
            options.BatchSize, options.MicroBatches, $"{members.Count} workers ({string.Join(", ", members.Select(m => m.Device).Distinct())})",
            members.Min(m => m.Threads), run.Allocator, run.OutputFolder));
        observer.Masks(condensing.Version, step, condensing.Masks);
        Begin();
    }

    /// <summary>Brings the replicas to the job's starting state: as they are, the checkpoint's, or the workers' own (masks read back).</summary>
    void Begin()
    {
        if (origin == Origin.Scratch)
        {
            Loaded();
            return;
        }
        start = Start.LoadingState;
        phase = Phase.LoadingState;
        if (origin == Origin.WorkersMemory)
        {
            // The masks to decide from are the ones the replicas hold.
            var (source, at) = (membership.Members[0], step);
            Background($"reading the masks of {source.Id}", async () =>
            {
                return new MasksRead(LayerMasks.FromState(options.Model, await states.FetchAsync(source.Endpoint, at)));
            });
            return;
        }
        var (resumed, targets) = (starting!, membership.Members.ToArray());
        Background("loading the starting state into the workers", async () =>
        {
            var loaded = await Task.WhenAll(targets.Select(async m => (m.Id, await states.LoadAsync(m.Endpoint, resumed.Step, resumed.State))));
            return new StatesLoaded(loaded);
        });
        observer.Event(new StartingStateLoading(resumed.Step, targets.Length, resumed.From));
    }

    /// <summary>The replicas hold the starting state: training begins.</summary>
    void Loaded()
    {
        start = Start.Training;
        Boundaries(step);
    }
}
