using System.Diagnostics;
using CondenseCluster.Shared.Comm;
using Xunit;
using Xunit.Abstractions;

namespace CondenseCluster.Tests.Comm;

/// <summary>The hierarchical all-reduce on real sockets, ranks grouped into simulated hosts (their own 127.0.0.x addresses).</summary>
[Collection(nameof(RingFailureTests))]
public class HierarchicalAllReduceTests(ITestOutputHelper output)
{
    // Three hosts of two ranks, the hosts interleaved in rank order.
    static readonly string[] Addresses = ["127.0.0.21", "127.0.0.22", "127.0.0.23", "127.0.0.21", "127.0.0.22", "127.0.0.23"];
    static readonly DataPlaneOptions Options = new() { SegmentBytes = 4096, ProgressTimeout = TimeSpan.FromSeconds(2) };

    [Fact]
    public async Task SumsExactlyAndBitIdenticallyWithUnixSocketsWithinAHostAndTcpAcross()
    {
        await using var ring = await TestRing.StartAsync(Addresses, Options);
        int[] members = [.. Enumerable.Range(0, 6)];
        long operation = 0;
        foreach (long length in RingPlanTests.Lengths)
        {
            var integers = RingPlanTests.Buffers(6, length, (r, i) => (i % 101) * (r + 1) - 3 * r);
            long[] before = ring.Nodes.Select(n => n.BytesSent).ToArray();
            await ring.AllReduceAsync(members, integers, ++operation);
            for (int i = 0; i < length; i++) Assert.Equal(Enumerable.Range(0, 6).Sum(r => (i % 101) * (r + 1) - 3 * r), integers[0][i]);
            RingPlanTests.AssertBitIdentical(integers);
            if (length == 100_003)
            {
                // Rank 0 sends the whole buffer within its host (a ring of two: half in the reduce-scatter, half in the
                // all-gather) and across hosts 2/3 of its host chunk (chunk 1 of 2, in a ring of three), where one ring
                // of six, whose every hop crosses hosts here, sends 5/3 of the buffer across.
                int hostChunk = RingPlan.Chunk(length, 2, 1).Length;
                long across = 2L * hostChunk - RingPlan.Chunk(hostChunk, 3, 1).Length - RingPlan.Chunk(hostChunk, 3, 2).Length;
                Assert.Equal((length + across) * sizeof(float), ring.Nodes[0].BytesSent - before[0]);
                Assert.True(across < length / 1.4, $"{across} floats across hosts");
            }
        }
        Assert.All(ring.Nodes, n => Assert.Equal(OperatingSystem.IsLinux() ? "shm+tcp" : "tcp+tcp", n.Transport));

        var random = new Random(6);
        var halves = RingPlanTests.Buffers(6, 10_007, (_, _) => (float)random.NextDouble() * 2 - 1);
        long half = ++operation;
        await Task.WhenAll(members.Select(m => ring.Nodes[m].AllReduceAsync(halves[m], half, WirePrecision.Float16)));
        RingPlanTests.AssertBitIdentical(halves);
    }

    [Fact]
    public async Task ALostRankFailsEveryRankWithinTheBoundAndTheSurvivorsSumInOneRing()
    {
        await using var ring = await TestRing.StartAsync(Addresses, Options);
        var buffers = RingPlanTests.Buffers(6, 100_000, (r, i) => r + i);
        // Rank 4 never starts this all-reduce and goes away while the others wait for it.
        var others = new[] { 0, 1, 2, 3, 5 }.Select(m => Assert.ThrowsAsync<AllReduceException>(() => ring.Nodes[m].AllReduceAsync(buffers[m], 1))).ToArray();
        await Task.Delay(200);
        var watch = Stopwatch.StartNew();
        await ring.Nodes[4].DisposeAsync();
        var failures = await Task.WhenAll(others);
        output.WriteLine($"{watch.ElapsedMilliseconds} ms: {string.Join(" | ", failures.Select(f => f.Reason))}");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1), $"{watch.Elapsed}");
        Assert.All(failures, f => Assert.Contains(f.Reason, new[] { AllReduceFailure.StreamBroken, AllReduceFailure.PeerUnreachable }));

        int[] survivors = [0, 1, 2, 3, 5]; // hosts of 2, 2 and 1 ranks: one ring
        ring.Configure(survivors, generation: 2);
        var again = RingPlanTests.Buffers(5, 1001, (r, i) => r * 1000 + i);
        await ring.AllReduceAsync(survivors, again, 2);
        Assert.Equal(Enumerable.Range(0, 5).Sum(r => r * 1000 + 500), again[0][500]);
        RingPlanTests.AssertBitIdentical(again);
    }
}
