using CondenseCluster.Shared.Comm;
using CondenseCluster.Tests.Cluster;
using Xunit;
using Xunit.Abstractions;

namespace CondenseCluster.Tests.Comm;

/// <summary>The all-reduce over real sockets on loopback: shared memory (headers on Unix sockets) or Unix sockets between ranks of this host, or TCP.</summary>
public class RingAllReduceTests(ITestOutputHelper output)
{
    [Theory]
    [InlineData(1, 1 << 20, RingTransportKind.Auto)]
    [InlineData(2, 1 << 20, RingTransportKind.Auto)]
    [InlineData(3, 1 << 20, RingTransportKind.Auto)]
    [InlineData(5, 1 << 20, RingTransportKind.Auto)]
    [InlineData(3, 4096, RingTransportKind.Auto)] // 100,003 floats: ~10 segments per chunk, and a shared ring of 8 that each chunk wraps
    [InlineData(3, 4096, RingTransportKind.Unix)]
    [InlineData(3, 4096, RingTransportKind.Tcp)]
    [InlineData(3, 12, RingTransportKind.Auto)]   // segments of three floats in a shared ring of 96 bytes: the sender waits for room at every frame
    [InlineData(4, 4, RingTransportKind.Tcp)]     // a segment of one float: every value its own frame
    public async Task SumsExactlyAndBitIdenticallyForAnyLengthOverRepeatedAllReduces(int size, int segmentBytes, RingTransportKind transport)
    {
        await using var ring = await TestRing.StartAsync(size, new DataPlaneOptions { SegmentBytes = segmentBytes, Transport = transport });
        int[] members = [.. Enumerable.Range(0, size)];
        long operation = 0;
        foreach (long length in RingPlanTests.Lengths.Where(l => segmentBytes > 4 || l <= 1000))
        {
            var integers = RingPlanTests.Buffers(size, length, (r, i) => (i % 101) * (r + 1) - 3 * r);
            await ring.AllReduceAsync(members, integers, ++operation);
            for (int i = 0; i < length; i++)
                Assert.Equal(Enumerable.Range(0, size).Sum(r => (i % 101) * (r + 1) - 3 * r), integers[0][i]);
            RingPlanTests.AssertBitIdentical(integers);
        }
        long randomLength = segmentBytes > 4 ? 100_003 : 1_003;
        var random = new Random(size);
        var randoms = RingPlanTests.Buffers(size, randomLength, (_, _) => (float)random.NextDouble() * 2 - 1);
        float expected = randoms.Sum(b => b[(int)(randomLength / 8)]);
        long[] before = ring.Nodes.Select(n => n.BytesSent).ToArray();
        await ring.AllReduceAsync(members, randoms, ++operation);
        // The bytes counted: reduce-scatter sends every chunk but the one after the rank's, all-gather every chunk but
        // the one two after, 2(N-1)/N of the buffer in all (nothing on a ring of one).
        int Chunk(int index) => RingPlan.Chunk(randomLength, size, index % size).Length;
        for (int rank = 0; rank < size; rank++)
            Assert.Equal((2L * randomLength - Chunk(rank + 1) - Chunk(rank + 2)) * sizeof(float), ring.Nodes[rank].BytesSent - before[rank]);
        RingPlanTests.AssertBitIdentical(randoms);
        Assert.Equal(expected, randoms[^1][(int)(randomLength / 8)], 4);
        string expectedTransport = transport == RingTransportKind.Tcp || !OperatingSystem.IsLinux() ? "tcp"
            : transport == RingTransportKind.Unix || !Directory.Exists("/dev/shm") ? "unix" : "shm";
        Assert.All(ring.Nodes, n => Assert.Equal(size == 1 ? null : expectedTransport, n.Transport));
    }

    [Theory]
    [InlineData(2, 4096, WirePrecision.Float32)]
    [InlineData(3, 4096, WirePrecision.Float32)]
    [InlineData(5, 1 << 20, WirePrecision.Float32)]
    [InlineData(3, 12, WirePrecision.Float32)]   // a shared ring of 96 bytes: even references wait for room
    [InlineData(3, 4096, WirePrecision.Float16)] // halves are made in a segment buffer: they go through the shared ring
    public async Task BuffersInSharedMemoryAreReadWhereTheyLieAndSumExactly(int size, int segmentBytes, WirePrecision precision)
    {
        await using var ring = await TestRing.StartAsync(size, new DataPlaneOptions { SegmentBytes = segmentBytes });
        long operation = 0, referencedBefore = ring.Nodes.Sum(n => n.BytesReferenced), sentBefore = ring.Nodes.Sum(n => n.BytesSent);
        foreach (int length in RingPlanTests.Lengths.Where(l => segmentBytes > 12 || l <= 1000))
        {
            var buffers = ring.Nodes.Select(n => n.CreateBuffer(length)).ToArray();
            try
            {
                Assert.All(buffers, b => Assert.Equal(length > 0, b is SharedFloatBuffer)); // nothing to share in no values
                for (int rank = 0; rank < size; rank++)
                    for (int i = 0; i < length; i++) buffers[rank].Memory.Span[i] = (i % 101) * (rank + 1) - 3 * rank; // exact as halves too
                long id = ++operation;
                await Task.WhenAll(ring.Nodes.Select((n, rank) => n.AllReduceAsync(buffers[rank].Memory, id, precision)));
                var results = buffers.Select(b => b.Memory.ToArray()).ToArray();
                for (int i = 0; i < length; i++)
                    Assert.Equal(Enumerable.Range(0, size).Sum(r => (i % 101) * (r + 1) - 3 * r), results[0][i]);
                RingPlanTests.AssertBitIdentical(results);
            }
            finally
            {
                foreach (var buffer in buffers) buffer.Dispose();
            }
            Assert.All(buffers.OfType<SharedFloatBuffer>(), b => Assert.False(File.Exists(b.Path))); // a disposed buffer leaves nothing in /dev/shm
        }
        long referenced = ring.Nodes.Sum(n => n.BytesReferenced) - referencedBefore, sent = ring.Nodes.Sum(n => n.BytesSent) - sentBefore;
        output.WriteLine($"{referenced} of {sent} payload bytes read from the sender's buffer");
        // Float32 values are all read where the sender summed them; halves never are.
        Assert.Equal(precision == WirePrecision.Float32 ? sent : 0, referenced);
        Assert.True(sent > 0);
    }

    [Fact]
    public async Task ARankThatOverwritesItsBufferAsSoonAsItsAllReduceEndsNeverSpoilsItsNeighboursSums()
    {
        // A rank's all-reduce ends only once its right neighbour has read the segments it passed by reference; were it
        // to end sooner, the neighbour would read the NaNs written below.
        const int size = 3, length = 100_003;
        await using var ring = await TestRing.StartAsync(size, new DataPlaneOptions { SegmentBytes = 4096 });
        var buffers = ring.Nodes.Select(n => n.CreateBuffer(length)).ToArray();
        try
        {
            for (long operation = 1; operation <= 20; operation++)
            {
                for (int rank = 0; rank < size; rank++) buffers[rank].Memory.Span.Fill(rank + operation);
                var results = await Task.WhenAll(ring.Nodes.Select(async (node, rank) =>
                {
                    await node.AllReduceAsync(buffers[rank].Memory, operation);
                    var result = buffers[rank].Memory.ToArray();
                    buffers[rank].Memory.Span.Fill(float.NaN);
                    return result;
                }));
                float expected = Enumerable.Range(0, size).Sum(r => r + operation);
                Assert.All(results, result => Assert.All(result, v => Assert.Equal(expected, v)));
            }
            Assert.All(ring.Nodes, n => Assert.True(n.BytesReferenced > 0));
        }
        finally
        {
            foreach (var buffer in buffers) buffer.Dispose();
        }
    }

    [Fact]
    public async Task AFullSharedMemoryFolderLeavesThePayloadsOnTheUnixSocketsAndTheSumsExact()
    {
        // A real full tmpfs (mounted, so root is needed): creating the ring's file fails when the connection opens, not with SIGBUS later.
        string folder = Path.Combine(Path.GetTempPath(), $"full-shm-{Environment.ProcessId}-{Guid.NewGuid():N}");
        using (RefusingFolder.Full(folder))
        {
            await using var ring = await TestRing.StartAsync(3, new DataPlaneOptions { SegmentBytes = 4096, SharedMemoryFolder = folder });
            int[] members = [0, 1, 2];
            var buffers = RingPlanTests.Buffers(3, 100_003, (r, i) => (i % 101) * (r + 1));
            await ring.AllReduceAsync(members, buffers, 1);
            Assert.Equal(Enumerable.Range(0, 3).Sum(r => 50 * (r + 1)), buffers[0][50]);
            RingPlanTests.AssertBitIdentical(buffers);
            Assert.All(ring.Nodes, n => Assert.Equal("unix", n.Transport));
            using (var heap = ring.Nodes[0].CreateBuffer(1000)) Assert.IsType<FloatArray>(heap); // no room for a shared buffer either
            Assert.Equal(["filler"], Directory.EnumerateFileSystemEntries(folder).Select(Path.GetFileName));
        }
        Directory.Delete(folder);
    }

    [Theory]
    [InlineData(2)]
    [InlineData(3)]
    public async Task HalfPrecisionSendsHalfTheBytesAndEveryRankEndsWithTheSameCloseSum(int size)
    {
        await using var ring = await TestRing.StartAsync(size, new DataPlaneOptions { SegmentBytes = 4096 });
        int[] members = [.. Enumerable.Range(0, size)];
        var random = new Random(size);
        // Gradients of very different sizes, one far beyond a half's range.
        var buffers = RingPlanTests.Buffers(size, 100_003, (_, i) => (float)(random.NextDouble() * 2 - 1) * (i % 7 == 0 ? 1e6f : 1e-2f));
        var exact = Enumerable.Range(0, 100_003).Select(i => buffers.Sum(b => (double)b[i])).ToArray();
        var copies = buffers.Select(b => b.ToArray()).ToArray();

        await ring.AllReduceAsync(members, copies, 1); // float32, for the bytes
        long[] before = ring.Nodes.Select(n => n.BytesSent).ToArray();
        await Task.WhenAll(members.Select(m => ring.Nodes[m].AllReduceAsync(buffers[m], 2, WirePrecision.Float16)));

        RingPlanTests.AssertBitIdentical(buffers);
        for (int rank = 0; rank < size; rank++)
            Assert.Equal(before[rank] / 2, ring.Nodes[rank].BytesSent - before[rank]);
        // Each of the N-1 additions and the final rounding is off by at most 2^-11 of what it rounds (a message's
        // values share one scale, so small ones next to 1e6 lose more).
        double worst = 0;
        for (int i = 0; i < exact.Length; i++)
        {
            double scale = Math.Max(Math.Abs(exact[i]), i % 7 == 0 ? 1e6 : 1e-2) * size;
            worst = Math.Max(worst, Math.Abs(buffers[0][i] - exact[i]) / scale);
        }
        output.WriteLine($"N = {size}: largest error {worst:E2} of the values' magnitude");
        Assert.True(worst <= size * Math.ScaleB(1, -11), $"error {worst:E2}");
    }

    [Fact]
    public async Task ATwentyMegabyteBufferTravelsInMessagesUnderTheGrpcLimit()
    {
        await using var ring = await TestRing.StartAsync(2);
        const int length = 5 * 1024 * 1024; // 20 MiB of floats; a chunk of 10 MiB is 10 messages
        var buffers = RingPlanTests.Buffers(2, length, (r, i) => r == 0 ? i % 1000 : 1);
        var watch = System.Diagnostics.Stopwatch.StartNew();
        await ring.AllReduceAsync([0, 1], buffers, 1);
        output.WriteLine($"20 MiB, N = 2: {watch.Elapsed.TotalMilliseconds:0} ms");
        Assert.Equal(1, buffers[0][0]);
        Assert.Equal((length - 1) % 1000 + 1, buffers[1][length - 1]);
        RingPlanTests.AssertBitIdentical(buffers);
    }

    [Fact]
    public async Task TheBandwidthProbesPushTheBytesToTheRightNeighbour()
    {
        await using var ring = await TestRing.StartAsync(2);
        double socket = await ring.Nodes[0].MeasureSocketBandwidthAsync(64 << 20);
        double grpc = await ring.Nodes[0].MeasureGrpcStreamBandwidthAsync(16 << 20);
        output.WriteLine($"raw socket ({ring.Nodes[0].Transport}): {socket / 1e6:0} MB/s, raw gRPC stream: {grpc / 1e6:0} MB/s");
        Assert.True(socket > 0 && grpc > 0);
    }

    [Fact]
    public async Task RanksThatDisagreeOnTheOperationFailWithMismatch()
    {
        await using var ring = await TestRing.StartAsync(2);
        var buffers = RingPlanTests.Buffers(2, 10, (_, i) => i);
        var failures = await Task.WhenAll(
            Assert.ThrowsAsync<AllReduceException>(() => ring.Nodes[0].AllReduceAsync(buffers[0], 1)),
            Assert.ThrowsAsync<AllReduceException>(() => ring.Nodes[1].AllReduceAsync(buffers[1], 2)));
        // Whichever rank reads the other's message first reports the mismatch and ends its stream; the other may see that
        // broken stream before it reads the mismatched message.
        Assert.Contains(failures, f => f.Reason == AllReduceFailure.Mismatch);
        Assert.All(failures, f => Assert.Contains(f.Reason, new[] { AllReduceFailure.Mismatch, AllReduceFailure.StreamBroken }));
    }

    [Fact]
    public async Task RingGenerationsMustGrow()
    {
        await using var ring = await TestRing.StartAsync(2);
        Assert.Throws<ArgumentException>(() => ring.Configure([0, 1], generation: 1));
    }
}
