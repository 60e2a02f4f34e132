namespace CondenseCluster.Tests.Cluster;

/// <summary>
/// A folder made to refuse writes until disposal (needs root, for mount): <see cref="Full"/> mounts a small tmpfs over
/// it and fills it, <see cref="ReadOnly"/> bind-mounts it onto itself read-only. Used for a run's checkpoints/ folder
/// and for the ring's shared-memory folder. A full disk is a new one: what was written before it lies hidden under the
/// mount while it stands (for checkpoints, a resume in that span would not see them; <c>CheckpointWriteFailed.Newest</c>
/// names none) and is back once it is unmounted, with nothing of the refused writes left behind. The read-only folder
/// keeps showing it.
/// </summary>
sealed class RefusingFolder : IDisposable
{
    readonly string folder;

    /// <summary>Each of <paramref name="mounts"/> (mount's options) applied to <paramref name="folder"/>, then <paramref name="then"/>.</summary>
    RefusingFolder(string folder, string[][] mounts, Action then)
    {
        this.folder = folder;
        Directory.CreateDirectory(folder); // before the first checkpoint, nobody has made it yet
        try
        {
            foreach (var mount in mounts) RootCommand.Run("mount", [.. mount, folder]);
            then();
        }
        catch
        {
            Dispose();
            throw;
        }
    }

    public static RefusingFolder Full(string folder) => new(folder, [["-t", "tmpfs", "-o", "size=64k", "tmpfs"]], () =>
    {
        using var filler = new FileStream(Path.Combine(folder, "filler"), FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0);
        try
        {
            while (true) filler.Write(new byte[4096]);
        }
        catch (IOException) { } // no space left on the device: full
    });

    /// <summary>The remount leaves one mount (the bind) to undo, as the tmpfs does.</summary>
    public static RefusingFolder ReadOnly(string folder) => new(folder, [["--bind", folder], ["-o", "remount,bind,ro"]], () => { });

    /// <summary>Lazily, so that a file the coordinator still holds open cannot keep the folder refused.</summary>
    public void Dispose() => RootCommand.TryRun("umount", "--lazy", folder);
}
