using System.CommandLine;
using System.CommandLine.Parsing;
using CondenseCluster.Shared.Model;
using CondenseCluster.Shared.Storage;

namespace CondenseCluster.Shared.Runtime;

/// <summary>The command-line entry and option parsing the programs share.</summary>
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

    /// <summary>
    /// An option's comma-separated positive integers (e.g. <paramref name="example"/>), for its <c>CustomParser</c>:
    /// null when the option has no value, and a parse error naming the bad part and the form when one is not such a number.
    /// </summary>
    public static int[]? PositiveIntegers(ArgumentResult argument, string example)
    {
        if (argument.Tokens.Count == 0) return null;
        string text = string.Join(",", argument.Tokens.Select(t => t.Value));
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var values = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], out values[i]) || values[i] <= 0)
            {
                argument.AddError($"'{parts[i]}' in '{text}' is not a positive integer; give a comma-separated list such as {example}");
                return null;
            }
        }
        return values;
    }
}
