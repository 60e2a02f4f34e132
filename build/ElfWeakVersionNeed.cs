// Marks one symbol-version requirement of an ELF shared library as weak (VER_FLG_WEAK in its
// .gnu.version_r entry), so the dynamic loader accepts the library where that version is absent.
// libLibTorchSharp.so 0.107.0 asks for GLIBCXX_3.4.32 only for `_ZSt21ios_base_library_initv`,
// a link-time marker that is never called; Debian 12, Ubuntu 22.04 and RHEL 9 lack that version.
// This file is compiled twice: into an MSBuild inline task (build/TorchSharpElfFix.targets) and into
// the tests, which define ELF_PATCH_LOGIC_ONLY to leave the MSBuild task out.
using System;
using System.IO;
using System.Text;

namespace CondenseCluster.Build
{
    public enum ElfPatchOutcome { Patched, AlreadyWeak, VersionNotRequired }

    public static class ElfWeakVersionNeed
    {
        const uint ShtGnuVerneed = 0x6ffffffe;
        const ushort VerFlgWeak = 0x2;

        /// <summary>Sets VER_FLG_WEAK on every vernaux entry named <paramref name="versionName"/>.</summary>
        public static ElfPatchOutcome MarkWeak(byte[] elf, string versionName)
        {
            if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
                throw new InvalidDataException("not an ELF file (bad magic number)");
            if (elf[4] != 2 || elf[5] != 1)
                throw new InvalidDataException("only 64-bit little-endian ELF files are supported (EI_CLASS=" + elf[4] + ", EI_DATA=" + elf[5] + ")");

            ulong sectionTable = U64(elf, 0x28);
            int entrySize = U16(elf, 0x3A), sectionCount = U16(elf, 0x3C);
            if (sectionTable == 0 || entrySize < 64 || sectionTable + (ulong)(entrySize * sectionCount) > (ulong)elf.Length)
                throw new InvalidDataException("ELF section header table lies outside the file (truncated file?)");

            bool found = false, changed = false;
            for (int s = 0; s < sectionCount; s++)
            {
                int header = checked((int)sectionTable + s * entrySize);
                if (U32(elf, header + 4) != ShtGnuVerneed) continue;
                int offset = checked((int)U64(elf, header + 0x18));
                int size = checked((int)U64(elf, header + 0x20));
                int strings = StringTableOffset(elf, sectionTable, entrySize, sectionCount, (int)U32(elf, header + 0x28));
                int needCount = (int)U32(elf, header + 0x2C);
                CheckRange(elf, offset, size, ".gnu.version_r");

                int need = offset;
                for (int n = 0; n < needCount; n++)
                {
                    CheckRange(elf, need, 16, "a Verneed entry");
                    int auxCount = U16(elf, need + 2);
                    int aux = need + (int)U32(elf, need + 8);
                    for (int a = 0; a < auxCount; a++)
                    {
                        CheckRange(elf, aux, 16, "a Vernaux entry");
                        if (ReadString(elf, strings + (int)U32(elf, aux + 8)) == versionName)
                        {
                            found = true;
                            ushort flags = U16(elf, aux + 4);
                            if ((flags & VerFlgWeak) == 0)
                            {
                                WriteU16(elf, aux + 4, (ushort)(flags | VerFlgWeak));
                                changed = true;
                            }
                        }
                        aux += (int)U32(elf, aux + 12);
                    }
                    need += (int)U32(elf, need + 12);
                }
            }
            return !found ? ElfPatchOutcome.VersionNotRequired : changed ? ElfPatchOutcome.Patched : ElfPatchOutcome.AlreadyWeak;
        }

        /// <summary>Patches the file in place; writes only when something changed.</summary>
        public static ElfPatchOutcome MarkWeakInFile(string path, string versionName)
        {
            byte[] elf = File.ReadAllBytes(path);
            ElfPatchOutcome outcome = MarkWeak(elf, versionName);
            if (outcome == ElfPatchOutcome.Patched)
            {
                string temp = path + ".patching";
                File.WriteAllBytes(temp, elf);
                File.Delete(path);
                File.Move(temp, path);
            }
            return outcome;
        }

        static int StringTableOffset(byte[] elf, ulong sectionTable, int entrySize, int sectionCount, int index)
        {
            if (index <= 0 || index >= sectionCount)
                throw new InvalidDataException(".gnu.version_r links to section " + index + ", which does not exist");
            return checked((int)U64(elf, (int)sectionTable + index * entrySize + 0x18));
        }

        static string ReadString(byte[] elf, int start)
        {
            int end = Array.IndexOf(elf, (byte)0, start);
            if (start < 0 || end < 0) throw new InvalidDataException("ELF string at offset " + start + " is not terminated");
            return Encoding.ASCII.GetString(elf, start, end - start);
        }

        static void CheckRange(byte[] elf, int offset, int length, string what)
        {
            if (offset < 0 || length < 0 || (long)offset + length > elf.Length)
                throw new InvalidDataException(what + " at offset " + offset + " lies outside the file (truncated file?)");
        }

        static ushort U16(byte[] b, int o) => BitConverter.ToUInt16(b, o);
        static uint U32(byte[] b, int o) => BitConverter.ToUInt32(b, o);
        static ulong U64(byte[] b, int o) => BitConverter.ToUInt64(b, o);
        static void WriteU16(byte[] b, int o, ushort v) { b[o] = (byte)v; b[o + 1] = (byte)(v >> 8); }
    }

#if !ELF_PATCH_LOGIC_ONLY
    /// <summary>MSBuild task: marks <see cref="VersionName"/> weak in each of <see cref="Files"/>.</summary>
    public class MarkElfVersionWeak : Microsoft.Build.Utilities.Task
    {
        [Microsoft.Build.Framework.Required] public Microsoft.Build.Framework.ITaskItem[] Files { get; set; } = Array.Empty<Microsoft.Build.Framework.ITaskItem>();
        [Microsoft.Build.Framework.Required] public string VersionName { get; set; } = "";

        public override bool Execute()
        {
            foreach (var item in Files)
            {
                try
                {
                    var outcome = ElfWeakVersionNeed.MarkWeakInFile(item.ItemSpec, VersionName);
                    Log.LogMessage(Microsoft.Build.Framework.MessageImportance.Normal, "{0}: {1} {2}", item.ItemSpec, VersionName, outcome);
                }
                catch (Exception e) when (e is IOException || e is InvalidDataException || e is OverflowException)
                {
                    Log.LogError("Could not mark {0} weak in {1}: {2}", VersionName, item.ItemSpec, e.Message);
                }
            }
            return !Log.HasLoggedErrors;
        }
    }
#endif
}
