using System.Diagnostics;
using System.IO.MemoryMappedFiles;
using System.Text.RegularExpressions;

namespace CondenseCluster.Shared.Comm;

/// <summary>
/// The files in /dev/shm (or another tmpfs) through which ranks on one host share memory: the payload ring of a
/// connection (<see cref="SharedPayloadRing"/>) and a rank's all-reduce buffers (<see cref="SharedFloatBuffer"/>). Each
/// name carries its process id, so that the files of a process that died are found and removed.
/// </summary>
public static partial class SharedMemoryFile
{
    /// <summary>Where the files go unless <see cref="DataPlaneOptions.SharedMemoryFolder"/> says otherwise.</summary>
    public const string DefaultFolder = "/dev/shm";
    const string Prefix = "condense-ring-";

    /// <summary>The path of a new file of this process in <paramref name="folder"/>; <paramref name="name"/> tells it from the process's others.</summary>
    public static string PathFor(string folder, string name) => PathFor(folder, Environment.ProcessId, name);

    /// <summary>The path of process <paramref name="owner"/>'s file <paramref name="name"/> in <paramref name="folder"/>.</summary>
    public static string PathFor(string folder, int owner, string name) => Path.Combine(folder, $"{Prefix}{owner}-{name}");

    /// <summary>
    /// Creates the file of <paramref name="bytes"/> and maps it, or returns null where the folder cannot hold it. Its
    /// space is allocated now: a full tmpfs fails here, not with SIGBUS when a page is first written.
    /// </summary>
    public static MemoryMappedFile? TryCreate(string path, long bytes)
    {
        try
        {
            var stream = new FileStream(path, new FileStreamOptions
            {
                Mode = FileMode.CreateNew, Access = FileAccess.ReadWrite, Share = FileShare.ReadWrite | FileShare.Delete, PreallocationSize = bytes,
            });
            stream.SetLength(bytes);
            return MemoryMappedFile.CreateFromFile(stream, null, bytes, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, leaveOpen: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(path);
            return null;
        }
    }

    /// <summary>The name of a connection's payload ring: a random part after the process id.</summary>
    public static string RingName() => Guid.NewGuid().ToString("N");

    /// <summary>The name of the process's all-reduce buffer <paramref name="id"/>, which its neighbours find by id.</summary>
    public static string BufferName(int id) => $"buffer-{id}";

    /// <summary>
    /// Maps a file another rank named; <see cref="InvalidDataException"/> when <paramref name="path"/> is not such a file
    /// in <paramref name="folder"/> (a payload ring's, or with <paramref name="buffer"/> an all-reduce buffer's), or cannot be mapped.
    /// </summary>
    public static (MemoryMappedFile File, long Length) Open(string path, string folder, bool buffer, MemoryMappedFileAccess access)
    {
        var name = OwnerOf().Match(Path.GetFileName(path));
        if (Path.GetDirectoryName(path) != Path.TrimEndingDirectorySeparator(folder) || !name.Success || name.Groups[2].Value.StartsWith("buffer-") != buffer)
            throw new InvalidDataException($"'{path}' is not a ring's shared-memory {(buffer ? "buffer" : "file")} in {folder}");
        try
        {
            long length = new FileInfo(path).Length;
            return (MemoryMappedFile.CreateFromFile(path, FileMode.Open, null, 0, access), length);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new InvalidDataException($"the shared-memory file {path} cannot be mapped: {e.Message}", e);
        }
    }

    /// <summary>The process that made the file at <paramref name="path"/> (one <see cref="Open"/> accepted), as its name says.</summary>
    public static int OwnerPid(string path) => int.Parse(OwnerOf().Match(Path.GetFileName(path)).Groups[1].Value);

    /// <summary>Removes the files of processes that died before they could remove them.</summary>
    public static void RemoveOrphans(string folder)
    {
        if (!Directory.Exists(folder)) return;
        foreach (string path in Directory.EnumerateFiles(folder, Prefix + "*"))
        {
            var match = OwnerOf().Match(Path.GetFileName(path));
            if (match.Success && int.TryParse(match.Groups[1].Value, out int pid) && !Running(pid)) TryDelete(path);
        }
    }

    [GeneratedRegex(@"^condense-ring-(\d+)-([0-9a-f]{32}|buffer-\d+)$")]
    private static partial Regex OwnerOf();

    static bool Running(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException) { return false; }
    }

    public static void TryDelete(string path)
    {
        try { File.Delete(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { }
    }
}

/// <summary>A shared-memory file mapped into this process, at a pointer that stays valid until <see cref="Dispose"/>.</summary>
public sealed unsafe class SharedMapping : IDisposable
{
    readonly MemoryMappedFile file;
    readonly MemoryMappedViewAccessor view;

    /// <summary>Maps the first <paramref name="bytes"/> of <paramref name="file"/>, which it then owns.</summary>
    public SharedMapping(MemoryMappedFile file, long bytes, MemoryMappedFileAccess access)
    {
        this.file = file;
        view = file.CreateViewAccessor(0, bytes, access);
        byte* pointer = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref pointer);
        Start = pointer + view.PointerOffset;
    }

    public byte* Start { get; }

    public void Dispose()
    {
        view.SafeMemoryMappedViewHandle.ReleasePointer();
        view.Dispose();
        file.Dispose();
    }
}
