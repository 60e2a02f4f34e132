using System.Diagnostics;
using CondenseCluster.Shared.Comm;
using Xunit;

namespace CondenseCluster.Tests.Comm;

/// <summary>The shared-memory ring of one connection, on its own: placement, room, and what it accepts to map.</summary>
public class SharedPayloadRingTests
{
    static SharedPayloadRing Create(int segmentBytes) =>
        SharedPayloadRing.TryCreate(SharedMemoryFile.DefaultFolder, segmentBytes) ?? throw new InvalidOperationException("/dev/shm cannot hold a ring here");

    [Fact]
    public async Task PayloadsOfEverySizeArriveInOrderAcrossTheEndAndTheSenderWaitsForRoom()
    {
        using var sender = Create(segmentBytes: 12); // 96 bytes of room
        using var receiver = SharedPayloadRing.Open(sender.Path, SharedMemoryFile.DefaultFolder);
        Assert.False(File.Exists(sender.Path)); // both have it mapped: nothing is left in /dev/shm
        int[] lengths = [.. Enumerable.Range(0, 400).Select(i => new[] { 12, 8, 4, 1, 24, 7, 0 }[i % 7])];
        byte[] Payload(int index) => [.. Enumerable.Range(0, lengths[index]).Select(b => (byte)(index * 31 + b))];
        int wakeUps = 0, written = 0; // payloads written so far: what their headers, which a socket carries in a ring, announce
        var receiving = Task.Run(() =>
        {
            for (int i = 0; i < lengths.Length; i++)
            {
                while (Volatile.Read(ref written) <= i) Thread.Yield();
                Assert.Equal(Payload(i), receiver.Next(lengths[i]).ToArray());
                if (receiver.Release(lengths[i]))
                {
                    wakeUps++;
                    sender.RoomWasMade();
                }
            }
        });
        for (int i = 0; i < lengths.Length; i++)
        {
            sender.Write(Payload(i), CancellationToken.None);
            Interlocked.Increment(ref written);
        }
        await receiving.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.True(wakeUps > 0, "the sender never had to wait for room");
    }

    [Fact]
    public async Task AWaitingSenderIsWokenOnceHalfTheRingIsFreeNotForEveryPayloadConsumed()
    {
        using var sender = Create(segmentBytes: 12); // 96 bytes of room: eight payloads of 12
        using var receiver = SharedPayloadRing.Open(sender.Path, SharedMemoryFile.DefaultFolder);
        for (int i = 0; i < 8; i++) sender.Write(new byte[12], CancellationToken.None);
        // A thread of its own, as a ring's sending half has: a pool thread may not start within the wait below.
        var writing = Task.Factory.StartNew(() => sender.Write(new byte[12], CancellationToken.None), TaskCreationOptions.LongRunning);
        Thread.Sleep(200);
        Assert.False(writing.IsCompleted); // the ring is full
        bool[] told = [.. Enumerable.Range(0, 5).Select(_ =>
        {
            receiver.Next(12);
            return receiver.Release(12);
        })];
        // One payload's room would let it write; it asked for half the ring (48 bytes) beyond its own 12.
        Assert.Equal([false, false, false, false, true], told);
        sender.RoomWasMade();
        await writing.WaitAsync(TimeSpan.FromSeconds(5));
        receiver.Next(12);
        Assert.False(receiver.Release(12)); // nobody waits any more
    }

    [Fact]
    public void AWaitingSenderStopsWhenTheConnectionEnds()
    {
        using var sender = Create(segmentBytes: 12);
        using var receiver = SharedPayloadRing.Open(sender.Path, SharedMemoryFile.DefaultFolder);
        sender.Write(new byte[96], CancellationToken.None); // the ring is full, and nobody reads
        using var ended = new CancellationTokenSource();
        var watch = Stopwatch.StartNew();
        var writing = Task.Run(() => sender.Write(new byte[4], ended.Token));
        Thread.Sleep(200);
        Assert.False(writing.IsCompleted);
        ended.Cancel();
        sender.RoomWasMade();
        Assert.Throws<OperationCanceledException>(() => writing.GetAwaiter().GetResult());
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5), $"{watch.Elapsed}");
    }

    [Fact]
    public void APayloadLargerThanTheRingIsMalformed()
    {
        using var sender = Create(segmentBytes: 12);
        using var receiver = SharedPayloadRing.Open(sender.Path, SharedMemoryFile.DefaultFolder);
        Assert.Throws<InvalidDataException>(() => receiver.Next(97).Length);
    }

    [Fact]
    public void AFileNamedLikeARingButNotLaidOutAsOneIsRefusedAndRemoved()
    {
        string path = $"/dev/shm/condense-ring-{Environment.ProcessId}-{Guid.NewGuid():N}";
        File.WriteAllBytes(path, new byte[4096 + 96]);
        var refused = Assert.Throws<InvalidDataException>(() => SharedPayloadRing.Open(path, SharedMemoryFile.DefaultFolder));
        Assert.Contains("not laid out as a ring's", refused.Message);
        Assert.False(File.Exists(path));
    }

    [Fact]
    public void OrphansOfDeadProcessesAreRemovedAndLiveOnesKept()
    {
        using var exited = Process.Start(new ProcessStartInfo("true"))!;
        exited.WaitForExit();
        string orphan = $"/dev/shm/condense-ring-{exited.Id}-{Guid.NewGuid():N}";
        File.WriteAllBytes(orphan, new byte[16]);
        using var live = Create(segmentBytes: 12);
        SharedMemoryFile.RemoveOrphans(SharedMemoryFile.DefaultFolder);
        Assert.False(File.Exists(orphan));
        Assert.True(File.Exists(live.Path));
    }
}
