namespace CondenseCluster.Tests.Cluster;

/// <summary>
/// A run's checkpoints/ folder made to refuse writes until disposal (needs root, for mount): <see cref="Full"/> mounts a
/// small tmpfs over it and fills it, <see cref="ReadOnly"/> bind-mounts it onto itself read-only. A full disk is a new
/// one: the checkpoints written before it lie hidden under the mount while it stands (a resume in that span would not
/// see them; <c>CheckpointWriteFailed.Newest</c> names none) and are back once it is unmounted, with nothing of the
/// refused writes left behind. The read-only folder keeps showing them.
/// </summary>
sealed class RefusedCheckpointDisk : IDisposable
{
    readonly string folder;

    /// <summary>Each of <paramref name="mounts"/> (mount's options) applied to <paramref name="folder"/>, then <paramref name="then"/>.</summary>
    RefusedCheckpointDisk(string folder, string[][] mounts, Action then)
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

    public static RefusedCheckpointDisk Full(string folder) => new(folder, [["-t", "tmpfs", "-o", "size=64k", "tmpfs"]], () =>
    {
        using var filler = new FileStream(Path.Combine(folder, "filler"), FileMode.CreateNew, FileAccess.Write, FileShare.None, bufferSize: 0);
        try
        {
            while (true) filler.Write(new byte[4096]);
        }
        catch (IOException) { } // no space left on the device: full
    });

    /// <summary>The remount leaves one mount (the bind) to undo, as the tmpfs does.</summary>
    public static RefusedCheckpointDisk ReadOnly(string folder) => new(folder, [["--bind", folder], ["-o", "remount,bind,ro"]], () => { });

    /// <summary>Lazily, so that a file the coordinator still holds open cannot keep the folder refused.</summary>
    public void Dispose() => RootCommand.TryRun("umount", "--lazy", folder);
}
