using System.CommandLine;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;

namespace CondenseCluster.Shared.Runtime;

/// <summary>The command-line entry both programs share.</summary>
public static class Cli
{
    /// <summary>Runs a command; expected failures (bad configuration, files, devices) print one clear line and exit 1.</summary>
    public static int Run(RootCommand root, string[] args)
    {
        var configuration = new InvocationConfiguration { EnableDefaultExceptionHandler = false };
        try
        {
            return root.Parse(args).Invoke(configuration);
        }
        catch (Exception e) when (e is ConfigurationException or CorruptFileException or FileNotFoundException or ArgumentException or InvalidOperationException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return 1;
        }
    }
}
