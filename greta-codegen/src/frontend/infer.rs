//! Type unification for unsuffixed literals: an integer literal takes the integer type it
//! meets first, a float literal the float type; unconstrained ones default to i32 / f32,
//! as in Rust.

use crate::types::{InferVar, Scalar, Type};

/// The table of inference variables and their bindings.
#[derive(Default)]
pub struct InferTable {
    slots: Vec<Option<Type>>,
}

impl InferTable {
    /// A fresh variable of integer or float kind.
    pub fn fresh(&mut self, float: bool) -> Type {
        self.slots.push(None);
        Type::Infer(InferVar {
            id: self.slots.len() as u32 - 1,
            float,
        })
    }

    /// Follows bindings until a non-variable or an unbound variable.
    pub fn resolve(&self, t: &Type) -> Type {
        match t {
            Type::Infer(v) => match &self.slots[v.id as usize] {
                Some(bound) => self.resolve(bound),
                None => t.clone(),
            },
            Type::Array(elem, n) => Type::Array(Box::new(self.resolve(elem)), *n),
            _ => t.clone(),
        }
    }

    /// Makes `a` and `b` the same type; `None` if they cannot be.
    pub fn unify(&mut self, a: &Type, b: &Type) -> Option<Type> {
        let (a, b) = (self.resolve(a), self.resolve(b));
        match (&a, &b) {
            (Type::Unknown, _) => Some(b),
            (_, Type::Unknown) => Some(a),
            (Type::Infer(v), Type::Infer(w)) => {
                if v.id == w.id {
                    Some(a)
                } else if v.float == w.float {
                    self.slots[v.id as usize] = Some(b.clone());
                    Some(b)
                } else {
                    None
                }
            }
            (Type::Infer(v), other) | (other, Type::Infer(v)) => {
                let fits = match other {
                    Type::Scalar(s) => {
                        if v.float {
                            s.is_float()
                        } else {
                            s.is_int()
                        }
                    }
                    Type::Generic(_) => true,
                    _ => false,
                };
                if fits {
                    self.slots[v.id as usize] = Some(other.clone());
                    Some(other.clone())
                } else {
                    None
                }
            }
            (Type::Array(x, n), Type::Array(y, m)) if n == m => {
                let elem = self.unify(x, y)?;
                Some(Type::Array(Box::new(elem), *n))
            }
            _ if a == b => Some(a),
            _ => None,
        }
    }

    /// The final type: unbound variables take Rust's defaults.
    pub fn finish(&self, t: &Type) -> Type {
        match self.resolve(t) {
            Type::Infer(v) if v.float => Type::Scalar(Scalar::F32),
            Type::Infer(_) => Type::Scalar(Scalar::I32),
            Type::Array(elem, n) => Type::Array(Box::new(self.finish(&elem)), n),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_take_the_type_they_meet_or_default() {
        let mut t = InferTable::default();
        let i = t.fresh(false);
        let f = t.fresh(true);
        assert_eq!(
            t.unify(&i, &Type::Scalar(Scalar::U32)),
            Some(Type::Scalar(Scalar::U32))
        );
        assert_eq!(t.finish(&i), Type::Scalar(Scalar::U32));
        assert_eq!(t.unify(&f, &Type::Scalar(Scalar::U32)), None);
        assert_eq!(t.finish(&f), Type::Scalar(Scalar::F32));
        let j = t.fresh(false);
        let k = t.fresh(false);
        assert!(t.unify(&j, &k).is_some());
        assert!(t.unify(&k, &Type::Scalar(Scalar::I64)).is_some());
        assert_eq!(t.finish(&j), Type::Scalar(Scalar::I64));
    }
}
