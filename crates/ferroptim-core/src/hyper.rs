//! Reading a param group's hyperparameters.
//!
//! A front end (the Python extension reads a dict) implements the four raw
//! getters of [`HyperSource`]; the range checks are provided here, so every
//! front end accepts and rejects the same values with the same messages.
//! Each optimizer's `from_group` (in its file under [`crate::kernels`]) says
//! which key gets which check.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// Raw, typed reads of one param group, each naming its key on error.
pub trait HyperSource {
    /// A number (not a bool); [`Error::Hyper`] when missing or not a number.
    fn number(&self, key: &str) -> Result<f64>;
    /// True or False.
    fn flag(&self, key: &str) -> Result<bool>;
    /// A sequence of two numbers.
    fn pair(&self, key: &str) -> Result<(f64, f64)>;
    /// The index of the value in `options`; `default` when the key is
    /// absent (groups saved before the option existed).
    fn choice(&self, key: &str, options: &[&str], default: usize) -> Result<usize>;

    /// A finite number >= 0.
    fn non_negative(&self, key: &str) -> Result<f64> {
        let v = self.number(key)?;
        if v.is_finite() && v >= 0.0 {
            Ok(v)
        } else {
            Err(Error::hyper(
                key,
                &format!("must be a finite number >= 0, got {v}"),
            ))
        }
    }

    /// A number in [0, 1].
    fn unit(&self, key: &str) -> Result<f64> {
        let v = self.number(key)?;
        if (0.0..=1.0).contains(&v) {
            Ok(v)
        } else {
            Err(Error::hyper(key, &format!("must be in [0, 1], got {v}")))
        }
    }

    /// A finite number.
    fn finite(&self, key: &str) -> Result<f64> {
        let v = self.number(key)?;
        if v.is_finite() {
            Ok(v)
        } else {
            Err(Error::hyper(key, &format!("must be finite, got {v}")))
        }
    }

    /// `(beta1, beta2)`, each in [0, 1).
    fn betas(&self, key: &str) -> Result<(f64, f64)> {
        let (b1, b2) = self.pair(key)?;
        for (i, b) in [b1, b2].into_iter().enumerate() {
            if !(0.0..1.0).contains(&b) {
                return Err(Error::hyper(
                    key,
                    &format!("beta{} must be in [0, 1), got {b}", i + 1),
                ));
            }
        }
        Ok((b1, b2))
    }
}

/// A value of a [`Group`].
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    Flag(bool),
    Pair(f64, f64),
    Text(String),
}

/// A param group for Rust callers and tests: keys to [`Value`]s.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Group(pub HashMap<String, Value>);

impl Group {
    /// Sets `key` (builder style).
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.0.insert(key.to_string(), value);
        self
    }

    fn get(&self, key: &str) -> Result<&Value> {
        self.0
            .get(key)
            .ok_or_else(|| Error::hyper(key, "missing from the param group"))
    }
}

impl HyperSource for Group {
    fn number(&self, key: &str) -> Result<f64> {
        match self.get(key)? {
            Value::Number(v) => Ok(*v),
            Value::Flag(_) => Err(Error::hyper(key, "must be a number, got a bool")),
            other => Err(Error::hyper(
                key,
                &format!("must be a number, got {other:?}"),
            )),
        }
    }

    fn flag(&self, key: &str) -> Result<bool> {
        match self.get(key)? {
            Value::Flag(v) => Ok(*v),
            other => Err(Error::hyper(
                key,
                &format!("must be True or False, got {other:?}"),
            )),
        }
    }

    fn pair(&self, key: &str) -> Result<(f64, f64)> {
        match self.get(key)? {
            Value::Pair(a, b) => Ok((*a, *b)),
            other => Err(Error::hyper(
                key,
                &format!("must be a pair of numbers, got {other:?}"),
            )),
        }
    }

    fn choice(&self, key: &str, options: &[&str], default: usize) -> Result<usize> {
        let Some(v) = self.0.get(key) else {
            return Ok(default);
        };
        match v {
            Value::Text(s) => options.iter().position(|o| o == s),
            _ => None,
        }
        .ok_or_else(|| {
            Error::hyper(
                key,
                &format!("must be one of {}, got {v:?}", options.join(", ")),
            )
        })
    }
}
