namespace CondenseCluster.Shared.Storage;

/// <summary>
/// Writes a file whole or not at all: the content goes to a temporary file beside it (the same folder, so the rename
/// is atomic), which then replaces it. A write that fails leaves the old file as it was and no temporary file behind.
/// </summary>
public static class AtomicFile
{
    /// <param name="writeTemporary">writes the whole content to the temporary path it is given</param>
    public static void Write(string path, Action<string> writeTemporary)
    {
        string fullPath = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(fullPath)!);
        string temp = $"{fullPath}.{Environment.ProcessId}.tmp";
        try
        {
            writeTemporary(temp);
            File.Move(temp, fullPath, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp)) File.Delete(temp);
        }
    }
}
