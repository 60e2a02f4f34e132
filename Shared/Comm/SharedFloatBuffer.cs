using System.Buffers;
using System.IO.MemoryMappedFiles;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// An all-reduce buffer in a file in /dev/shm (DESIGN.md §2): the right neighbour on the same host maps it read-only
/// and sums or copies a segment straight from where this rank summed it, so the segment is not first copied into the
/// connection's payload ring (<see cref="SharedPayloadRing"/>). Each segment's header still crosses the socket, which
/// tells the neighbour when a segment is ready; an all-reduce ends only once the neighbour has read all it was sent
/// (<see cref="IRingLink.AwaitPayloadsRead"/>), so the owner may change its buffer as soon as it has its sums.
/// </summary>
/// <remarks>
/// The file stays while the buffer lives, for the neighbours of later ring generations; it is removed when the buffer
/// is disposed or the process exits, and by <see cref="SharedMemoryFile.RemoveOrphans"/> after a crash.
/// </remarks>
public sealed unsafe class SharedFloatBuffer : MemoryManager<float>
{
    static readonly object registry = new();
    static SharedFloatBuffer[] live = []; // copied on change: senders look up without a lock
    static int lastId;

    readonly SharedMapping mapping;
    readonly byte* start;
    readonly bool owned;
    bool disposed;

    static SharedFloatBuffer() => AppDomain.CurrentDomain.ProcessExit += (_, _) =>
    {
        foreach (var buffer in Volatile.Read(ref live)) SharedMemoryFile.TryDelete(buffer.Path);
    };

    SharedFloatBuffer(string path, int id, MemoryMappedFile file, long bytes, bool owned)
    {
        (Path, Id, Bytes, this.owned) = (path, id, bytes, owned);
        mapping = new SharedMapping(file, bytes, owned ? MemoryMappedFileAccess.ReadWrite : MemoryMappedFileAccess.Read);
        start = mapping.Start;
    }

    public string Path { get; }

    /// <summary>This process's number for the buffer: the neighbour finds its file by the owner's process id and this.</summary>
    public int Id { get; }

    public long Bytes { get; }

    /// <summary>A new buffer of <paramref name="length"/> floats in <paramref name="folder"/> (a tmpfs), or null where it cannot hold one.</summary>
    public static SharedFloatBuffer? TryCreate(string folder, int length)
    {
        if (!Directory.Exists(folder) || length <= 0) return null;
        int id = Interlocked.Increment(ref lastId);
        string path = SharedMemoryFile.PathFor(folder, SharedMemoryFile.BufferName(id));
        if (SharedMemoryFile.TryCreate(path, (long)length * sizeof(float)) is not { } file) return null;
        var buffer = new SharedFloatBuffer(path, id, file, (long)length * sizeof(float), owned: true);
        lock (registry) live = [.. live, buffer];
        return buffer;
    }

    /// <summary>Maps, read-only, buffer <paramref name="id"/> of process <paramref name="owner"/>, a left neighbour; <see cref="InvalidDataException"/> when there is none.</summary>
    public static SharedFloatBuffer OpenNeighbours(string folder, int owner, int id)
    {
        string path = SharedMemoryFile.PathFor(folder, owner, SharedMemoryFile.BufferName(id));
        var (file, length) = SharedMemoryFile.Open(path, folder, buffer: true, MemoryMappedFileAccess.Read);
        try { return new SharedFloatBuffer(path, id, file, length, owned: false); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            file.Dispose();
            throw new InvalidDataException($"the shared-memory buffer {path} cannot be mapped: {e.Message}", e);
        }
    }

    /// <summary>
    /// Which of this process's buffers holds <paramref name="bytes"/>, and where in it: a sender passes such a payload
    /// by reference. False for memory that is not in one.
    /// </summary>
    public static bool TryLocate(ReadOnlySpan<byte> bytes, out int id, out long offset)
    {
        fixed (byte* at = bytes)
            foreach (var buffer in Volatile.Read(ref live))
                if (at >= buffer.start && at + bytes.Length <= buffer.start + buffer.Bytes)
                {
                    (id, offset) = (buffer.Id, at - buffer.start);
                    return true;
                }
        (id, offset) = (0, 0);
        return false;
    }

    /// <summary>The <paramref name="length"/> bytes at <paramref name="offset"/>; <see cref="InvalidDataException"/> when they are not all in the buffer.</summary>
    public ReadOnlySpan<byte> Read(long offset, int length) =>
        offset >= 0 && length >= 0 && offset + length <= Bytes
            ? new ReadOnlySpan<byte>(start + offset, length)
            : throw new InvalidDataException($"{length} bytes at {offset} are not in the {Bytes}-byte shared buffer {Path}");

    public override Span<float> GetSpan() => new(start, checked((int)(Bytes / sizeof(float))));

    // Mapped memory never moves.
    public override MemoryHandle Pin(int elementIndex = 0) => new(start + (long)elementIndex * sizeof(float));

    public override void Unpin() { }

    /// <summary>Unmaps, and removes the owner's file; the owner calls it once no all-reduce uses the buffer.</summary>
    public void Dispose() => ((IDisposable)this).Dispose();

    protected override void Dispose(bool disposing)
    {
        if (disposed) return;
        disposed = true;
        if (owned)
        {
            lock (registry) live = [.. live.Where(b => b != this)];
            SharedMemoryFile.TryDelete(Path); // a neighbour that mapped it keeps its pages until it unmaps
        }
        mapping.Dispose();
    }
}
