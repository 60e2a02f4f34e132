using System.Collections.Concurrent;
using System.Diagnostics;
using CondenseCluster.Shared.Comm;
using Xunit;
using Xunit.Abstractions;

namespace CondenseCluster.Tests.Comm;

// The bounds below are wall-clock times: run alone, not beside the tests that keep every core busy with training.
[CollectionDefinition(nameof(RingFailureTests), DisableParallelization = true)]
public class RingFailureCollection;

/// <summary>Dead, silent and unreachable peers: typed failures within the timeout, then a new ring that works.</summary>
[Collection(nameof(RingFailureTests))]
public class RingFailureTests(ITestOutputHelper output)
{
    static readonly DataPlaneOptions Options = new() { ProgressTimeout = TimeSpan.FromSeconds(2) };
    static readonly TimeSpan Bound = Options.ProgressTimeout + TimeSpan.FromSeconds(5); // slack for a loaded machine

    /// <summary>A timer may fire this much before a stopwatch says its time is up (it counts whole clock ticks).</summary>
    internal static readonly TimeSpan TimerGrain = TimeSpan.FromMilliseconds(50);

    [Fact]
    public async Task AKilledPeerFailsTheOthersFastAndTheSurvivorsFormANewRing()
    {
        await using var ring = await TestRing.StartAsync(3, Options);
        var buffers = RingPlanTests.Buffers(3, 1000, (r, i) => r + i);
        // Ranks 0 and 1 are inside the all-reduce (it waits for rank 2), when rank 1's node goes away.
        var first = ring.Nodes[0].AllReduceAsync(buffers[0], 1);
        var killed = ring.Nodes[1].AllReduceAsync(buffers[1], 1);
        await Task.Delay(100);
        var watch = Stopwatch.StartNew();
        await ring.Nodes[1].DisposeAsync();
        output.WriteLine($"disposed in {watch.ElapsedMilliseconds} ms");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"disposing took {watch.Elapsed}");

        var survivor = await Assert.ThrowsAsync<AllReduceException>(() => first);
        output.WriteLine($"{watch.ElapsedMilliseconds} ms: {survivor.Message}");
        Assert.True(watch.Elapsed < Bound, $"{watch.Elapsed}");
        Assert.Contains(survivor.Reason, new[] { AllReduceFailure.StreamBroken, AllReduceFailure.PeerUnreachable });
        Assert.Equal(AllReduceFailure.Aborted, (await Assert.ThrowsAsync<AllReduceException>(() => killed)).Reason);
        // Rank 2 learnt of it too: its generation has ended.
        var late = await Assert.ThrowsAsync<AllReduceException>(() => ring.Nodes[2].AllReduceAsync(buffers[2], 1));
        Assert.Equal(AllReduceFailure.StreamBroken, late.Reason);

        await SurvivorsSumAgain(ring, [2, 0]);
    }

    [Fact]
    public async Task ASilentPeerGivesTimeoutWithinTheBound()
    {
        await using var ring = await TestRing.StartAsync(3, Options);
        var buffers = RingPlanTests.Buffers(3, 1000, (r, i) => r + i);
        var watch = Stopwatch.StartNew();
        // Rank 2 is configured but never joins: rank 0 waits for it, rank 1 for rank 0.
        var failures = await Task.WhenAll(
            Assert.ThrowsAsync<AllReduceException>(() => ring.Nodes[0].AllReduceAsync(buffers[0], 1)),
            Assert.ThrowsAsync<AllReduceException>(() => ring.Nodes[1].AllReduceAsync(buffers[1], 1)));
        output.WriteLine($"{watch.ElapsedMilliseconds} ms: {failures[0].Message} | {failures[1].Message}");
        Assert.True(watch.Elapsed < Bound, $"{watch.Elapsed}");
        Assert.True(watch.Elapsed >= Options.ProgressTimeout - TimerGrain, $"{watch.Elapsed}");
        // Both wait on rank 2 and time out within milliseconds of each other; the first to do so ends its connections,
        // and the other may see that before its own timer fires.
        Assert.Contains(failures, f => f.Reason == AllReduceFailure.Timeout);
        Assert.All(failures, f => Assert.Contains(f.Reason, new[] { AllReduceFailure.Timeout, AllReduceFailure.StreamBroken }));
        Assert.Contains(ring.Nodes[2].Endpoint, failures.First(f => f.Reason == AllReduceFailure.Timeout).Message);

        await SurvivorsSumAgain(ring, [0, 1]);
    }

    [Fact]
    public async Task AnIdleRingThatLosesAPeerTellsEveryOwnerAtOnceAndAReconfiguredOneTellsNothing()
    {
        await using var ring = await TestRing.StartAsync(3, Options);
        var lost = new ConcurrentQueue<(int Node, long Generation, AllReduceException Error)>();
        for (int i = 0; i < 3; i++)
        {
            int node = i;
            ring.Nodes[i].NeighbourLost += (generation, error) => lost.Enqueue((node, generation, error));
        }
        await ring.AllReduceAsync([0, 1, 2], RingPlanTests.Buffers(3, 30, (r, i) => i), 1); // every connection of generation 1 is open
        ring.Configure([0, 1, 2], generation: 2);
        await ring.AllReduceAsync([0, 1, 2], RingPlanTests.Buffers(3, 30, (r, i) => i), 1);
        await Task.Delay(200);
        Assert.DoesNotContain(lost, l => l.Generation == 2); // retiring generation 1 in order is no loss of generation 2

        // Nobody all-reduces when node 2 goes away: rank 1 (its left neighbour) hears of it, and rank 0 from rank 1.
        var watch = Stopwatch.StartNew();
        await ring.Nodes[2].DisposeAsync();
        while (lost.Count(l => l.Generation == 2) < 2 && watch.Elapsed < Bound) await Task.Delay(10);
        output.WriteLine($"{watch.ElapsedMilliseconds} ms: {string.Join(" | ", lost.Select(l => $"node {l.Node}, generation {l.Generation}: {l.Error.Message}"))}");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1), $"{watch.Elapsed}");
        var current = lost.Where(l => l.Generation == 2).ToArray();
        Assert.Equal([0, 1], current.Select(l => l.Node).Order());
        Assert.All(current, l => Assert.Equal(AllReduceFailure.StreamBroken, l.Error.Reason));
        Assert.Contains(ring.Nodes[2].Endpoint, current.Single(l => l.Node == 1).Error.Message);
        await SurvivorsSumAgain(ring, [0, 1], generation: 3);
    }

    [Fact]
    public async Task AnUnreachablePeerFailsAtOnce()
    {
        await using var ring = await TestRing.StartAsync(2, Options);
        await ring.Nodes[1].DisposeAsync();
        var watch = Stopwatch.StartNew();
        var failure = await Assert.ThrowsAsync<AllReduceException>(() => ring.Nodes[0].AllReduceAsync(new float[10], 1));
        output.WriteLine($"{watch.ElapsedMilliseconds} ms: {failure.Message}");
        Assert.Contains(failure.Reason, new[] { AllReduceFailure.PeerUnreachable, AllReduceFailure.StreamBroken });
        Assert.True(watch.Elapsed < Options.ProgressTimeout, $"{watch.Elapsed}");

        ring.Nodes[0].ConfigureRing(0, [ring.Nodes[0].Endpoint, "http://127.0.0.1:9"], generation: 2); // nothing listens on port 9
        failure = await Assert.ThrowsAsync<AllReduceException>(() => ring.Nodes[0].AllReduceAsync(new float[10], 2));
        Assert.Equal(AllReduceFailure.PeerUnreachable, failure.Reason);
        Assert.Contains("http://127.0.0.1:9", failure.Message);
    }

    [Fact]
    public async Task AbortEndsAnAllReduceInFlightAndTheRingCanBeRebuilt()
    {
        await using var ring = await TestRing.StartAsync(2, Options);
        var buffers = RingPlanTests.Buffers(2, 100, (r, i) => i);
        var pending = ring.Nodes[0].AllReduceAsync(buffers[0], 1);
        await Task.Delay(50);
        var watch = Stopwatch.StartNew();
        ring.Nodes[0].Abort();
        Assert.Equal(AllReduceFailure.Aborted, (await Assert.ThrowsAsync<AllReduceException>(() => pending)).Reason);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1), $"{watch.Elapsed}");
        // The partner never ran this all-reduce; the messages it holds from the aborted attempt are discarded.
        await SurvivorsSumAgain(ring, [0, 1]);
    }

    [Fact]
    public async Task ACancelledCallerGetsOperationCanceled()
    {
        await using var ring = await TestRing.StartAsync(2, Options);
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => ring.Nodes[0].AllReduceAsync(new float[10], 1, cancel.Token));
    }

    static async Task SurvivorsSumAgain(TestRing ring, int[] members, long generation = 2)
    {
        ring.Configure(members, generation);
        var buffers = RingPlanTests.Buffers(members.Length, 1001, (r, i) => r * 1000 + i);
        await ring.AllReduceAsync(members, buffers, 7);
        Assert.Equal(Enumerable.Range(0, members.Length).Sum(r => r * 1000 + 500), buffers[0][500]);
        RingPlanTests.AssertBitIdentical(buffers);
    }
}
