//! Reference-counted string interning for the queue's last errors: a
//! destination that is down gives most of its queued mail the same reply,
//! kept once instead of once per message.

use std::collections::HashMap;
use std::rc::Rc;

/// Strings by id (ids start at 1; 0 means none), each counted by the
/// entries that use it and forgotten when the last one lets go.
#[derive(Debug, Default)]
pub(super) struct Interner {
    /// id - 1 → (text, uses); `None` for a free id.
    texts: Vec<Option<(Rc<str>, u32)>>,
    ids: HashMap<Rc<str>, u32>,
    free: Vec<u32>,
}

impl Interner {
    /// Take a use of `text`; 0 (none) when `max` ids are in use already.
    pub fn acquire(&mut self, text: &str, max: u32) -> u32 {
        self.acquire_uses(text, 1, max)
    }

    /// Take `n` uses of `text` at once (none, and 0, for `n` = 0); 0 when
    /// `max` ids are in use already.
    pub fn acquire_uses(&mut self, text: &str, n: u32, max: u32) -> u32 {
        if n == 0 {
            return 0;
        }
        if let Some(&id) = self.ids.get(text) {
            if let Some((_, uses)) = self.texts[id as usize - 1].as_mut() {
                *uses += n;
            }
            return id;
        }
        let id = match self.free.pop() {
            Some(id) => id,
            None if (self.texts.len() as u32) < max => {
                self.texts.push(None);
                self.texts.len() as u32
            }
            None => return 0,
        };
        let text: Rc<str> = Rc::from(text);
        self.ids.insert(text.clone(), id);
        self.texts[id as usize - 1] = Some((text, n));
        id
    }

    /// Give a use back (no-op for 0).
    pub fn release(&mut self, id: u32) {
        let Some(slot) = id.checked_sub(1).and_then(|i| self.texts.get_mut(i as usize)) else { return };
        let Some((text, uses)) = slot.as_mut() else { return };
        *uses -= 1;
        if *uses == 0 {
            self.ids.remove(&**text);
            *slot = None;
            self.free.push(id);
        }
    }

    pub fn get(&self, id: u32) -> Option<&str> {
        let slot = self.texts.get(id.checked_sub(1)? as usize)?;
        slot.as_ref().map(|(t, _)| &**t)
    }

    /// Strings in use.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Give back the room of strings no longer used.
    pub fn shrink(&mut self) {
        if self.ids.is_empty() {
            *self = Interner::default();
        } else if self.ids.capacity() > 4 * self.ids.len() + 1024 {
            self.ids.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_per_text_freed_with_its_last_use() {
        let mut i = Interner::default();
        let a = i.acquire("451 try later", 10);
        assert_eq!(i.acquire("451 try later", 10), a);
        i.acquire("451 try later", 10);
        let b = i.acquire("421 busy", 10);
        assert_ne!(a, b);
        assert_eq!(i.len(), 2);
        for _ in 0..3 {
            assert_eq!(i.get(a), Some("451 try later"));
            i.release(a);
        }
        assert_eq!(i.get(a), None);
        assert_eq!(i.len(), 1);
        assert_eq!(i.acquire("x", 10), a, "ids are reused");
    }

    #[test]
    fn full_table_gives_none() {
        let mut i = Interner::default();
        assert_eq!(i.acquire("a", 1), 1);
        assert_eq!(i.acquire("b", 1), 0);
        assert_eq!(i.get(0), None);
        i.release(0);
    }
}
