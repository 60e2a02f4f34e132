using CondenseCluster.Coordinator.Job;
using CondenseCluster.Shared.Cluster;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Training;
using CondenseCluster.Tests.Training;
using Xunit;

namespace CondenseCluster.Tests.Cluster;

/// <summary>The parts of the coordinator's job, each driven on its own (the whole state machine is in <see cref="TrainingJobTests"/>).</summary>
public class JobPartsTests : TempFolderTest
{
    static JobMember Worker(string id, HeldReplica? held = null) => new(id, $"http://{id}:1", "cpu", 1, held);

    [Fact]
    public void MembershipAdmitsWaitingWorkersInNameOrderAndNumbersEachRingAfterTheHighestGenerationSeen()
    {
        var membership = new JobMembership();
        membership.Wait(Worker("worker-2"), generationSeen: 4);
        membership.Wait(Worker("worker-1"), generationSeen: -1);
        Assert.True(membership.Knows("worker-2"));
        Assert.Null(membership.Member("worker-2")); // a joiner is no member yet
        Assert.Empty(membership.Members);

        Assert.Equal(["worker-2", "worker-1"], membership.Admit());
        Assert.Equal("http://worker-2:1", membership.Member("worker-2")?.Endpoint);
        Assert.Equal(["worker-1", "worker-2"], membership.Ids);
        Assert.Empty(membership.Joiners);
        var (generation, endpoints) = membership.NewRing();
        Assert.Equal(5, generation); // a restarted coordinator never reuses a generation a worker has seen
        Assert.Equal(["http://worker-1:1", "http://worker-2:1"], endpoints);
        Assert.Equal("receiving from rank 1 (worker-2 at http://worker-2:1)", membership.NameEndpoints("receiving from rank 1 (http://worker-2:1)"));

        membership.Wait(Worker("worker-0"), generationSeen: 0);
        membership.Remove("worker-0");
        membership.Remove("worker-1");
        Assert.False(membership.Knows("worker-0"));
        Assert.Null(membership.Member("worker-1"));
        Assert.Equal(["worker-2"], membership.Ids);
    }

    [Fact]
    public void AReplyRoundCompletesOnlyOnceEveryWorkerAnsweredWithAChecksum()
    {
        var round = new ReplyRound();
        round.Ask("worker-1");
        round.Ask("worker-2");
        Assert.False(round.Answered("worker-3"));
        Assert.True(round.Answered("worker-1"));
        round.Checksum("worker-1", "same");
        Assert.Null(round.Complete(members: 2));
        Assert.True(round.Answered("worker-2"));
        Assert.False(round.Answered("worker-2")); // answered once
        Assert.Null(round.Complete(members: 2)); // worker-2's checksum is still missing
        round.Checksum("worker-2", "same");
        Assert.Equal([("worker-1", "same"), ("worker-2", "same")], round.Complete(members: 2));
        Assert.Null(round.Complete(members: 2)); // taken

        round.Ask("worker-1");
        round.Forget("worker-1");
        Assert.Empty(round.Pending);
        Assert.False(ReplyRound.Late(ReplyRound.AnswerTimeout - TimeSpan.FromMilliseconds(1)));
        Assert.True(ReplyRound.Late(ReplyRound.AnswerTimeout));
    }

    [Fact]
    public void ACondensingRoundDecidesOnceEveryLayersImportanceIsInAndCommitsOnlyWhenAcknowledged()
    {
        var config = LocalTrainingTests.Tiny().Model;
        var initial = LayerMasks.Initial(config);
        var round = new CondensingRound(initial, config.CondenseFactor);
        Assert.Equal(new ComputeImportance(1), round.Begin());
        Assert.Throws<ArgumentException>(() => round.Add(new LayerImportance(1, initial.Count, [])));

        var random = new Random(5);
        for (int layer = 0; layer < initial.Count; layer++)
        {
            var kept = initial[layer].Kept;
            var importance = new float[kept.GetLength(0), kept.GetLength(1)];
            for (int g = 0; g < importance.GetLength(0); g++)
                for (int j = 0; j < importance.GetLength(1); j++)
                    importance[g, j] = (float)random.NextDouble();
            bool all = round.Add(MaskWire.Importance(1, layer, importance));
            Assert.Equal(layer == initial.Count - 1, all);
        }
        Assert.Equal(initial.Count, round.Decide(progress: 0.2));
        var broadcast = round.Broadcast(step: 2);
        Assert.Equal((1L, 2L), (broadcast.MaskVersion, broadcast.Step));
        Assert.All(broadcast.Stages, stage => Assert.Equal(1, stage));
        Assert.Same(initial, round.Masks); // in force only once every worker installed them
        string decided = round.DecidedChecksum;
        round.Commit();
        Assert.Null(round.Decided);
        Assert.Equal(decided, ModelCondensing.Checksum(round.Masks));
        Assert.NotEqual(ModelCondensing.Checksum(initial), decided);
    }

    static StepReport Report(string worker, long step, double computeMs) => new(worker, step, 1.0, 1, 8, computeMs, 2, 1, null, AllReduceBytes: 100 + step);

    [Fact]
    public void TheStepLedgerCompletesAStepWhenEveryMemberReportedItAndARecoverySettlesTheStepsBeforeItsStart()
    {
        var ledger = new StepLedger();
        Assert.Null(ledger.Record(Report("worker-1", 0, 10), members: 2));
        Assert.Equal(["worker-1", "worker-2"], ledger.Record(Report("worker-2", 0, 30), members: 2)!.Select(r => r.WorkerId));
        Assert.Null(ledger.Record(Report("worker-1", 1, 20), members: 2));
        Assert.Null(ledger.Record(Report("worker-1", 2, 40), members: 2));

        // The survivors continue from step 2: step 1 counts with worker-1's report alone; step 2 is redone.
        var settled = ledger.Settle(furthest: 2);
        Assert.Equal([1L], settled.Select(reports => reports[0].Step));
        Assert.Empty(ledger.Settle(furthest: 3));

        var timings = ledger.WorkerTimings();
        Assert.Equal(["worker-1", "worker-2"], timings.Select(t => t.Worker));
        Assert.Equal((3L, 20.0, 23.0, 102L), (timings[0].Steps, timings[0].ComputeMs, timings[0].StepMs, timings[0].LastStepBytesSent));
    }

    [Fact]
    public void TheStepLedgerHoldsNoReportOfACompleteStepAndABoundedSampleOfEachWorkersTimes()
    {
        var ledger = new StepLedger();
        var early = new List<WeakReference>();
        for (long step = 0; step < 20_000; step++)
            for (int w = 0; w < 4; w++)
            {
                var report = Report($"worker-{w}", step, computeMs: step % 100);
                if (step < 100) early.Add(new WeakReference(report));
                ledger.Record(report, members: 4);
            }
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        // Reports are held only until their step is complete: a long job's ledger does not grow with its steps.
        Assert.DoesNotContain(early, r => r.IsAlive);

        var timings = ledger.WorkerTimings();
        Assert.Equal(4, timings.Count);
        Assert.All(timings, t => Assert.Equal((20_000L, 20_099L), (t.Steps, t.LastStepBytesSent)));
        Assert.All(timings, t => Assert.InRange(t.ComputeMs, 45, 55)); // the median of 0..99, from the sample
    }

    [Fact]
    public void ARecoveryContinuesFromTheFurthestStepWithTheFirstMemberThereAsTheSource()
    {
        var recovery = new RecoveryRound();
        recovery.Begin();
        JobMember[] members = [Worker("worker-1"), Worker("worker-2"), Worker("worker-3")];
        recovery.Stopped("worker-1", 4);
        recovery.Stopped("worker-2", 5);
        recovery.Stopped("worker-3", 5);
        recovery.Stopped("worker-4", 9);
        recovery.Forget("worker-4"); // lost before the plan
        var plan = recovery.Plan(members);
        Assert.Equal((5L, "worker-2"), (plan.Step, plan.Source.Id));
        Assert.Equal(["worker-1"], plan.Behind);
        Assert.True(recovery.Clock.IsRunning);
    }

    [Fact]
    public async Task TheCheckpointWriterAnswersTheRequestsMadeBeforeAWriteAndFailsThoseLeftWhenTheJobEnds()
    {
        var writer = new CheckpointWriter(new CheckpointStore(Folder), LocalTrainingTests.Tiny());
        var early = new TaskCompletionSource<(string Path, long Step)>();
        writer.Request(early);
        Assert.True(writer.Requested);
        string path = await writer.Write(3, [1, 2, 3]);
        Assert.False(writer.Requested);
        Assert.Equal((path, 3L), await early.Task);
        Assert.Equal(path, writer.Newest);
        Assert.Equal(3, Checkpoint.Read(path).Header.Step);

        var late = new TaskCompletionSource<(string Path, long Step)>();
        writer.Request(late);
        writer.Abandon("stopped by the test");
        Assert.Contains("stopped by the test", (await Assert.ThrowsAsync<InvalidOperationException>(() => late.Task)).Message);
    }
}
