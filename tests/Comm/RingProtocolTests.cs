using CondenseCluster.Shared.Comm;
using Xunit;

namespace CondenseCluster.Tests.Comm;

/// <summary>The bytes on a ring connection: the hello, the listener's answer and the frame header.</summary>
public class RingProtocolTests
{
    [Fact]
    public void AFrameHeaderRoundTripsEveryField()
    {
        var frame = new RingFrame(long.MaxValue - 3, RingPhase.AllGather, 14, 15, 123_456_789, 65_536, WirePrecision.Float16, -100);
        var bytes = new byte[RingFrame.HeaderBytes];
        frame.Write(bytes);
        Assert.Equal(frame, RingFrame.Read(bytes));
        Assert.Equal(2 * 65_536, frame.PayloadBytes);
        var referring = frame with { Precision = WirePrecision.Float32, HalfExponent = 0, InSendersBuffer = true };
        referring.Write(bytes);
        Assert.Equal(referring, RingFrame.Read(bytes));
        Assert.True(frame.Carries(long.MaxValue - 3, new RingSlice(RingPhase.AllGather, 14, 15, 123_456_789, 65_536), WirePrecision.Float16));
        Assert.False(frame.Carries(long.MaxValue - 3, new RingSlice(RingPhase.AllGather, 14, 15, 123_456_789, 65_536), WirePrecision.Float32));
        Assert.False(frame.Carries(long.MaxValue - 3, new RingSlice(RingPhase.AllGather, 14, 15, 123_456_789, 65_535), WirePrecision.Float16));
    }

    public static TheoryData<string, int, byte> BrokenHeaders => new()
    {
        { "magic", 0, 0x41 },
        { "phase", 4, 2 },
        { "precision", 5, 7 },
        { "exponent of float32 values", 6, 3 },
        { "payload place", 7, 2 },
        { "negative step", 11, 0x80 },
        { "negative count", 31, 0xFF },
    };

    [Theory]
    [MemberData(nameof(BrokenHeaders))]
    public void AHeaderThatIsNoFrameIsRefusedWithTheField(string what, int at, byte value)
    {
        var bytes = new byte[RingFrame.HeaderBytes];
        new RingFrame(1, RingPhase.ReduceScatter, 0, 0, 0, 10).Write(bytes);
        bytes[at] = value;
        var error = Assert.Throws<InvalidDataException>(() => RingFrame.Read(bytes));
        Assert.False(string.IsNullOrWhiteSpace(error.Message), what);
    }

    [Fact]
    public void AnExponentBeyondAHalfsRangeIsRefused()
    {
        var bytes = new byte[RingFrame.HeaderBytes];
        new RingFrame(1, RingPhase.ReduceScatter, 0, 0, 0, 10, WirePrecision.Float16, FloatPayload.MaxHalfExponent + 1).Write(bytes);
        Assert.Throws<InvalidDataException>(() => RingFrame.Read(bytes));
    }

    [Fact]
    public void AHelloRoundTripsAndNamesItsReceiver()
    {
        var hello = new RingHello(RingConnectionKind.Ring, 42, RingDigest.Of(["http://a:1", "http://b:2", "http://c:3"]), 3, 2);
        var bytes = new byte[RingHello.Bytes];
        hello.Write(bytes);
        Assert.Equal(hello, RingHello.Read(bytes));
        Assert.Equal(0, hello.ReceiverRank);
    }

    [Theory]
    [InlineData(0, (byte)'X')] // not the magic
    [InlineData(6, 9)]         // another protocol version
    [InlineData(7, 3)]         // an unknown kind of connection
    [InlineData(24, 1)]        // a ring of one
    [InlineData(28, 5)]        // a sender outside the ring
    public void AHelloThisVersionDoesNotSpeakIsRefused(int at, byte value)
    {
        var bytes = new byte[RingHello.Bytes];
        new RingHello(RingConnectionKind.Ring, 1, 7, 2, 0).Write(bytes);
        bytes[at] = value;
        Assert.Throws<InvalidDataException>(() => RingHello.Read(bytes));
    }

    [Fact]
    public void TheDigestTellsRingsWithOtherMembersOrAnotherOrderApart()
    {
        ulong ring = RingDigest.Of(["http://a:1", "http://b:2"]);
        Assert.Equal(ring, RingDigest.Of(["http://a:1", "http://b:2"]));
        Assert.NotEqual(ring, RingDigest.Of(["http://b:2", "http://a:1"]));
        Assert.NotEqual(ring, RingDigest.Of(["http://a:1", "http://b:3"]));
        Assert.NotEqual(ring, RingDigest.Of(["http://a:1", "http://b:2", "http://c:3"]));
    }

    [Fact]
    public void AWelcomeRoundTripsAndExplainsARefusal()
    {
        var welcome = new RingWelcome(RingVerdict.Stale, 9);
        var bytes = new byte[RingWelcome.Bytes];
        welcome.Write(bytes);
        Assert.Equal(welcome, RingWelcome.Read(bytes));
        Assert.Contains("generation 9", welcome.Explain(7));
        bytes[4] = 99;
        Assert.Throws<InvalidDataException>(() => RingWelcome.Read(bytes));
    }
}
