using System.Buffers.Binary;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using CondenseCluster.Shared.Comm;
using Xunit;
using Xunit.Abstractions;

namespace CondenseCluster.Tests.Comm;

/// <summary>
/// What a rank does with what arrives on its ring listener: a hand-made socket plays its left neighbour, sending what
/// a real one would not (a frame cut short, a reset mid-segment, a stall, garbage), or connects as a peer of another
/// generation or another ring. Every case is a typed failure within its bound, nothing is summed from bad bytes, and a
/// connection that belongs to no ring ends none.
/// </summary>
[Collection(nameof(RingFailureTests))]
public class RingSocketFailureTests(ITestOutputHelper output)
{
    static readonly DataPlaneOptions Options = new() { ProgressTimeout = TimeSpan.FromSeconds(2), SegmentBytes = 4096 };
    static readonly TimeSpan Bound = Options.ProgressTimeout + TimeSpan.FromSeconds(5); // slack for a loaded machine
    const int Length = 2000; // two chunks of 1,000 floats, each four segments of 1,024 floats or fewer

    /// <summary>
    /// Rank 0 of a ring of two, all-reducing ones, whose left neighbour is the returned socket; rank 1's node exists but
    /// is never configured, so rank 0's own connection waits there and only its receiving half moves. The neighbour
    /// says its payloads follow their headers on the socket, or sends <paramref name="route"/> instead.
    /// </summary>
    static async Task<(TestRing Nodes, Socket Left, float[] Buffer, Task AllReduce, Stopwatch Running)> FakeLeftNeighbourAsync(byte[]? route = null)
    {
        var nodes = await TestRing.StartAsync(2, Options, configure: false);
        string[] endpoints = [nodes.Nodes[0].Endpoint, nodes.Nodes[1].Endpoint];
        nodes.Nodes[0].ConfigureRing(0, endpoints, generation: 1);
        var (left, welcome) = Connect(nodes.Nodes[0], new RingHello(RingConnectionKind.Ring, 1, RingDigest.Of(endpoints), 2, 1));
        Assert.Equal(RingVerdict.Accepted, welcome.Verdict);
        left.Send(route ?? RingPayloadRoute.Encode(null));
        var buffer = Enumerable.Repeat(1f, Length).ToArray();
        var running = Stopwatch.StartNew();
        return (nodes, left, buffer, nodes.Nodes[0].AllReduceAsync(buffer, 1), running);
    }

    /// <summary>Connects to <paramref name="node"/>'s ring listener over TCP with <paramref name="hello"/> and reads its answer.</summary>
    static (Socket Socket, RingWelcome Welcome) Connect(DataPlaneNode node, RingHello hello)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = 10_000 };
        socket.Connect(new IPEndPoint(IPAddress.Loopback, node.RingPort));
        var bytes = new byte[RingHello.Bytes];
        hello.Write(bytes);
        socket.Send(bytes);
        var answer = new byte[RingWelcome.Bytes];
        int received = 0;
        while (received < answer.Length && socket.Receive(answer, received, answer.Length - received, SocketFlags.None) is > 0 and var n) received += n;
        Assert.Equal(answer.Length, received);
        return (socket, RingWelcome.Read(answer));
    }

    /// <summary>The header of the first segment rank 0 receives: reduce-scatter step 0 carries chunk 1.</summary>
    static byte[] FirstHeader(long operation = 1)
    {
        var bytes = new byte[RingFrame.HeaderBytes];
        RingFrame.Of(operation, new RingSlice(RingPhase.ReduceScatter, 0, 1, 1000, 1000), WirePrecision.Float32).Write(bytes);
        return bytes;
    }

    async Task<AllReduceException> FailsWithin(Task allReduce, TimeSpan bound, Stopwatch watch)
    {
        var failure = await Assert.ThrowsAsync<AllReduceException>(() => allReduce);
        output.WriteLine($"{watch.ElapsedMilliseconds} ms: {failure.Message}");
        Assert.True(watch.Elapsed < bound, $"{watch.Elapsed}");
        return failure;
    }

    [Fact]
    public async Task AFrameThatIsNoFrameIsMalformedAndNothingIsSummed()
    {
        var (nodes, left, buffer, allReduce, _) = await FakeLeftNeighbourAsync();
        await using var _ = nodes;
        using var __ = left;
        var watch = Stopwatch.StartNew();
        left.Send(Enumerable.Range(0, RingFrame.HeaderBytes + 4000).Select(i => (byte)(i * 7)).ToArray());
        var failure = await FailsWithin(allReduce, TimeSpan.FromSeconds(1), watch);
        Assert.Equal(AllReduceFailure.Malformed, failure.Reason);
        Assert.All(buffer, v => Assert.Equal(1f, v));
    }

    [Fact]
    public Task APayloadRouteThatIsNoRouteIsMalformedAndNothingIsSummed() => RouteIsMalformed([.. "CCPR"u8, 7, 0, 0], "payload route 7");

    /// <summary>The left neighbour says <paramref name="route"/> after the welcome: the all-reduce fails at once as Malformed, nothing summed.</summary>
    async Task RouteIsMalformed(byte[] route, string why)
    {
        var (nodes, left, buffer, allReduce, _) = await FakeLeftNeighbourAsync(route);
        await using var _ = nodes;
        using var __ = left;
        var failure = await FailsWithin(allReduce, TimeSpan.FromSeconds(1), Stopwatch.StartNew());
        Assert.Equal(AllReduceFailure.Malformed, failure.Reason);
        Assert.Contains(why, failure.Message);
        Assert.All(buffer, v => Assert.Equal(1f, v));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ASharedMemoryRouteToAFileThatIsNoRingsIsMalformedAndTheFileIsLeftAlone(bool inShm)
    {
        // Outside /dev/shm, or there under a name that is no ring's: neither is mapped nor removed.
        string path = inShm && Directory.Exists("/dev/shm") ? $"/dev/shm/not-a-ring-{Environment.ProcessId}-{Guid.NewGuid():N}" : Path.GetTempFileName();
        File.WriteAllBytes(path, new byte[8192]);
        try
        {
            await RouteIsMalformed(RingPayloadRoute.Encode(path), "is not a ring's shared-memory file");
            Assert.Equal(8192, new FileInfo(path).Length);
        }
        finally
        {
            File.Delete(path);
        }
    }

    public static TheoryData<string, bool, bool, long> ReferencesToNowhere => new()
    {
        { "on a connection without shared memory", false, true, 0 },
        { "cannot be mapped", true, false, 0 },    // no buffer of that id
        { "are not in the 4000-byte shared buffer", true, true, 4 }, // 1,000 floats from byte 4 of 1,000
    };

    [Theory]
    [MemberData(nameof(ReferencesToNowhere))]
    public async Task AFrameSaidToLieInTheSendersBufferWhereNoneIsIsMalformedAndNothingIsSummed(string why, bool sharedRing, bool bufferExists, long offset)
    {
        using var shared = sharedRing ? SharedPayloadRing.TryCreate(SharedMemoryFile.DefaultFolder, Options.SegmentBytes) : null;
        using var buffer = bufferExists ? SharedFloatBuffer.TryCreate(SharedMemoryFile.DefaultFolder, 1000) : null;
        var (nodes, left, values, allReduce, _) = await FakeLeftNeighbourAsync(RingPayloadRoute.Encode(shared?.Path));
        await using var _ = nodes;
        using var __ = left;
        var reference = new byte[16]; // as a sender writes it into the shared ring: the buffer's id, then the byte offset
        BinaryPrimitives.WriteInt32LittleEndian(reference, buffer?.Id ?? int.MaxValue);
        BinaryPrimitives.WriteInt64LittleEndian(reference.AsSpan(8), offset);
        shared?.Write(reference, CancellationToken.None);
        var header = FirstHeader();
        header[7] = 1; // the payload lies in the sender's buffer
        var watch = Stopwatch.StartNew();
        left.Send(header);
        var failure = await FailsWithin(allReduce, TimeSpan.FromSeconds(1), watch);
        Assert.Equal(AllReduceFailure.Malformed, failure.Reason);
        Assert.Contains(why, failure.Message);
        Assert.All(values, v => Assert.Equal(1f, v));
    }

    [Fact]
    public async Task AFrameOfAnotherAllReduceIsAMismatchAndNothingIsSummed()
    {
        var (nodes, left, buffer, allReduce, _) = await FakeLeftNeighbourAsync();
        await using var _ = nodes;
        using var __ = left;
        var watch = Stopwatch.StartNew();
        left.Send([.. FirstHeader(operation: 2), .. MemoryMarshal.AsBytes(Enumerable.Repeat(5f, 1000).ToArray().AsSpan()).ToArray()]);
        var failure = await FailsWithin(allReduce, TimeSpan.FromSeconds(1), watch);
        Assert.Equal(AllReduceFailure.Mismatch, failure.Reason);
        Assert.Contains("all-reduce 2", failure.Message);
        Assert.All(buffer, v => Assert.Equal(1f, v));
    }

    [Fact]
    public async Task AHeaderCutShortBreaksTheStreamAtOnce()
    {
        var (nodes, left, _, allReduce, _) = await FakeLeftNeighbourAsync();
        await using var _ = nodes;
        var watch = Stopwatch.StartNew();
        left.Send(FirstHeader()[..10]);
        left.Shutdown(SocketShutdown.Send);
        var failure = await FailsWithin(allReduce, TimeSpan.FromSeconds(1), watch);
        Assert.Equal(AllReduceFailure.StreamBroken, failure.Reason);
        Assert.Contains("inside a frame header (10 of 32 bytes)", failure.Message);
        left.Dispose();
    }

    [Fact]
    public async Task AConnectionResetMidSegmentBreaksTheStreamAtOnce()
    {
        var (nodes, left, _, allReduce, _) = await FakeLeftNeighbourAsync();
        await using var _ = nodes;
        left.Send([.. FirstHeader(), .. new byte[1000]]); // a quarter of the segment's 4,000 bytes
        await Task.Delay(100);
        var watch = Stopwatch.StartNew();
        left.LingerState = new LingerOption(true, 0);
        left.Dispose(); // a reset, as when a process dies with bytes unread
        var failure = await FailsWithin(allReduce, TimeSpan.FromSeconds(1), watch);
        Assert.Equal(AllReduceFailure.StreamBroken, failure.Reason);
    }

    [Fact]
    public async Task ANeighbourThatStallsMidSegmentTimesOutWithinTheBound()
    {
        var (nodes, left, _, allReduce, running) = await FakeLeftNeighbourAsync();
        await using var _ = nodes;
        using var __ = left;
        left.Send([.. FirstHeader(), .. new byte[1000]]); // then nothing, as from a stopped process
        var failure = await FailsWithin(allReduce, Bound, running);
        Assert.Equal(AllReduceFailure.Timeout, failure.Reason);
        Assert.True(running.Elapsed >= Options.ProgressTimeout - RingFailureTests.TimerGrain, $"{running.Elapsed}"); // half a frame is no progress
    }

    [Fact]
    public async Task GarbageForeignStaleAndDuplicateConnectionsAreRefusedAndTheRingStillSums()
    {
        await using var ring = await TestRing.StartAsync(2, Options);
        var a = ring.Nodes[0];
        string[] endpoints = [a.Endpoint, ring.Nodes[1].Endpoint];
        ulong digest = RingDigest.Of(endpoints);

        using (var garbage = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { ReceiveTimeout = 10_000 })
        {
            garbage.Connect(new IPEndPoint(IPAddress.Loopback, a.RingPort));
            garbage.Send(new byte[RingHello.Bytes].Select((_, i) => (byte)(i * 13 + 1)).ToArray());
            Assert.Equal(0, garbage.Receive(new byte[16])); // closed without a word
        }
        Assert.Equal(RingVerdict.Foreign, Connect(a, new RingHello(RingConnectionKind.Ring, 1, digest ^ 1, 2, 1)).Welcome.Verdict);
        Assert.Equal(RingVerdict.Foreign, Connect(a, new RingHello(RingConnectionKind.Ring, 1, digest, 3, 1)).Welcome.Verdict);
        await SumAsync(ring, [0, 1], operation: 1); // rank 1's real connection is in now
        Assert.Equal(RingVerdict.Duplicate, Connect(a, new RingHello(RingConnectionKind.Ring, 1, digest, 2, 1)).Welcome.Verdict);

        ring.Configure([0, 1], generation: 2);
        var stale = Connect(a, new RingHello(RingConnectionKind.Ring, 1, digest, 2, 1)).Welcome;
        Assert.Equal((RingVerdict.Stale, 2L), (stale.Verdict, stale.Generation));
        await SumAsync(ring, [0, 1], operation: 1);
    }

    [Fact]
    public async Task APeerOfAnOlderGenerationIsRefusedAndEveryRanksAllReduceFailsWithinTheBound()
    {
        await using var ring = await TestRing.StartAsync(2, Options, configure: false);
        var (a, b) = (ring.Nodes[0], ring.Nodes[1]);
        string[] endpoints = [a.Endpoint, b.Endpoint];
        a.ConfigureRing(0, endpoints, generation: 2);
        b.ConfigureRing(1, endpoints, generation: 1); // missed the newer ring
        var watch = Stopwatch.StartNew();
        var late = Assert.ThrowsAsync<AllReduceException>(() => b.AllReduceAsync(new float[Length], 1));
        var current = Assert.ThrowsAsync<AllReduceException>(() => a.AllReduceAsync(new float[Length], 1));

        var refused = await late;
        output.WriteLine($"{watch.ElapsedMilliseconds} ms: {refused.Message}");
        Assert.Equal(AllReduceFailure.Refused, refused.Reason);
        Assert.Contains("generation 2, newer than 1", refused.Message);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(1), $"{watch.Elapsed}");
        var waiting = await current; // its left neighbour never comes
        output.WriteLine($"{watch.ElapsedMilliseconds} ms: {waiting.Message}");
        Assert.Contains(waiting.Reason, new[] { AllReduceFailure.Timeout, AllReduceFailure.StreamBroken });
        Assert.True(watch.Elapsed < Bound, $"{watch.Elapsed}");

        ring.Configure([0, 1], generation: 3);
        await SumAsync(ring, [0, 1], operation: 1);
    }

    static async Task SumAsync(TestRing ring, int[] members, long operation)
    {
        var buffers = RingPlanTests.Buffers(members.Length, Length, (r, i) => r * 1000 + i);
        await ring.AllReduceAsync(members, buffers, operation);
        Assert.Equal(Enumerable.Range(0, members.Length).Sum(r => r * 1000 + 500), buffers[0][500]);
        RingPlanTests.AssertBitIdentical(buffers);
    }
}
