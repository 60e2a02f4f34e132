using System.IO.MemoryMappedFiles;
using System.Runtime.CompilerServices;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// The payloads of one ring connection between two ranks on one host, through a file in /dev/shm (or another tmpfs) that both map
/// (DESIGN.md §2): the sender copies a frame's payload into this ring of bytes and then sends only the frame's header
/// over the Unix socket; the receiver, once it has the header, sums or copies the payload from where it lies. That
/// saves the kernel's two copies of every byte (measured: BENCHMARKS.md). The socket still carries every header, so
/// framing, validation and failures stay the socket's: a dead sender closes it, a stopped one stops its headers.
/// </summary>
/// <remarks>
/// Layout: the first page holds the bytes the receiver has consumed (i64 at 0), how far the receiver must have consumed
/// before it wakes a sender that waits for room (i64 at 64, 0 when none waits), and the magic and capacity (at 128);
/// payloads follow from byte 4096. A payload never wraps: one that
/// would cross the end starts at the beginning instead, by the same rule on both sides (<see cref="Place"/>).
/// </remarks>
public sealed unsafe class SharedPayloadRing : IDisposable
{
    const int ConsumedAt = 0, WakeAtAt = 64, MagicAt = 128, CapacityAt = 136, DataAt = 4096;
    const long Magic = 0x31474E4952434343; // "CCCRING1"

    /// <summary>The byte a receiver sends back on the socket when it made room for a sender that waits for it.</summary>
    public const byte RoomMade = 0x52;

    readonly SharedMapping mapping;
    readonly byte* start;
    readonly long capacity;
    readonly object room = new();
    long position; // bytes written (sender) or consumed (receiver) so far, skipped tails included
    bool disposed;

    SharedPayloadRing(string path, MemoryMappedFile file, long capacity)
    {
        (Path, this.capacity) = (path, capacity);
        mapping = new SharedMapping(file, DataAt + capacity, MemoryMappedFileAccess.ReadWrite);
        start = mapping.Start;
    }

    public string Path { get; }

    /// <summary>Room for eight segments (two when they are large), so that a sender rarely waits for its receiver.</summary>
    public static long CapacityFor(int segmentBytes) => Math.Max(2L * segmentBytes, Math.Min(8L * segmentBytes, 4 << 20));

    /// <summary>A new ring for a sender in <paramref name="folder"/> (a tmpfs), or null where it cannot hold one: the payloads then follow their headers on the socket.</summary>
    public static SharedPayloadRing? TryCreate(string folder, int segmentBytes)
    {
        if (!Directory.Exists(folder)) return null;
        long capacity = CapacityFor(segmentBytes);
        string path = SharedMemoryFile.PathFor(folder, SharedMemoryFile.RingName());
        if (SharedMemoryFile.TryCreate(path, DataAt + capacity) is not { } file) return null;
        var ring = new SharedPayloadRing(path, file, capacity);
        *(long*)(ring.start + MagicAt) = Magic;
        *(long*)(ring.start + CapacityAt) = capacity;
        return ring;
    }

    /// <summary>The receiver's side of the ring its left neighbour named, a ring's file in <paramref name="folder"/>, which it removes once mapped.</summary>
    public static SharedPayloadRing Open(string path, string folder)
    {
        var (file, length) = SharedMemoryFile.Open(path, folder, buffer: false, MemoryMappedFileAccess.ReadWrite);
        SharedPayloadRing? ring = null;
        try
        {
            if (length <= DataAt) throw new InvalidDataException($"the shared-memory file {path} holds {length} bytes, no payloads");
            ring = new SharedPayloadRing(path, file, length - DataAt);
            if (*(long*)(ring.start + MagicAt) != Magic || *(long*)(ring.start + CapacityAt) != length - DataAt)
                throw new InvalidDataException($"the shared-memory file {path} is not laid out as a ring's");
            return ring;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidDataException)
        {
            if (ring is not null) ring.Dispose();
            else file.Dispose();
            if (e is InvalidDataException) throw;
            throw new InvalidDataException($"the shared-memory file {path} cannot be mapped: {e.Message}", e);
        }
        finally
        {
            SharedMemoryFile.TryDelete(path); // both sides hold it mapped: nothing is left behind if either dies
        }
    }

    ref long Consumed => ref Unsafe.AsRef<long>(start + ConsumedAt);
    ref long WakeAt => ref Unsafe.AsRef<long>(start + WakeAtAt);

    /// <summary>Where a payload of <paramref name="length"/> bytes written after <paramref name="at"/> bytes begins (in the stream of bytes).</summary>
    long Place(long at, int length)
    {
        long offset = at % capacity;
        return offset + length > capacity ? at + capacity - offset : at;
    }

    /// <summary>
    /// The sender's copy of a payload into the ring, after waiting for room: the receiver makes room as it consumes, and
    /// sends <see cref="RoomMade"/> back once it has consumed as far as this side asked (<see cref="RoomWasMade"/> wakes
    /// the wait). A sender waits for half the ring, not for one payload: the receiver is the slower side (it sums), and
    /// a wake-up per payload cost both processes a socket write and two thread switches per segment (BENCHMARKS.md).
    /// </summary>
    public void Write(ReadOnlySpan<byte> payload, CancellationToken ended)
    {
        long at = Place(position, payload.Length), end = at + payload.Length;
        // Half the ring free, but never beyond what was written: the receiver cannot consume more.
        if (end - Volatile.Read(ref Consumed) > capacity) AwaitConsumed(Math.Max(end - capacity, Math.Min(position, end - capacity / 2)), ended);
        ended.ThrowIfCancellationRequested();
        payload.CopyTo(new Span<byte>(start + DataAt + at % capacity, payload.Length));
        position = end;
    }

    /// <summary>Returns once the receiver has consumed all that was written: payloads that refer to the sender's buffer were read.</summary>
    public void Drain(CancellationToken ended)
    {
        if (Volatile.Read(ref Consumed) < position) AwaitConsumed(position, ended);
        ended.ThrowIfCancellationRequested();
    }

    void AwaitConsumed(long wakeAt, CancellationToken ended)
    {
        while (Volatile.Read(ref Consumed) < wakeAt)
            lock (room)
            {
                Interlocked.Exchange(ref WakeAt, wakeAt); // a full fence: the receiver reads it after publishing what it consumed
                if (Volatile.Read(ref Consumed) >= wakeAt) break;
                ended.ThrowIfCancellationRequested();
                Monitor.Wait(room, 100); // the bound only covers a wake-up lost with a closing connection
            }
        Interlocked.CompareExchange(ref WakeAt, 0, wakeAt); // not asked for any more, if the receiver did not take it
    }

    /// <summary>The receiver made room, or the connection ended: a waiting <see cref="Write"/> looks again.</summary>
    public void RoomWasMade()
    {
        lock (room) Monitor.PulseAll(room);
    }

    /// <summary>The receiver's view of the next payload, which the header just read announced; valid until <see cref="Release"/>.</summary>
    public ReadOnlySpan<byte> Next(int length)
    {
        if (length > capacity) throw new InvalidDataException($"a payload of {length} bytes does not fit the shared ring of {capacity}");
        long at = Place(position, length);
        return new ReadOnlySpan<byte>(start + DataAt + at % capacity, length);
    }

    /// <summary>The payload of <see cref="Next"/> is consumed; true when the sender waits for the room this made and must be told.</summary>
    public bool Release(int length)
    {
        position = Place(position, length) + length;
        Volatile.Write(ref Consumed, position);
        Interlocked.MemoryBarrier(); // the sender's wish is read after what was consumed is published
        long wakeAt = Volatile.Read(ref WakeAt);
        return wakeAt != 0 && position >= wakeAt && Interlocked.CompareExchange(ref WakeAt, 0, wakeAt) == wakeAt;
    }

    /// <summary>Unmaps; the owner calls it once no thread reads or writes the ring any more.</summary>
    public void Dispose()
    {
        if (disposed) return;
        disposed = true;
        RoomWasMade();
        mapping.Dispose();
        SharedMemoryFile.TryDelete(Path); // the sender's, when its receiver never opened it
    }
}
